"""Forges (Gitea/Forgejo, GitHub, GitLab): pull requests through their REST APIs, and their webhooks."""
