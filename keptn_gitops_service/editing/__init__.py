"""The pure editing core: text in, text out. No git, no subprocess, no event loop (an import contract holds it)."""
