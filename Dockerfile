# syntax=docker/dockerfile:1
#
# keptn-gitops-service container image.
#
#   docker build -t keptn-gitops-service:0.1.0 .
#   docker run --rm keptn-gitops-service:0.1.0 --version
#
# The image holds the service only: the simulated world (keptn_gitops_sim, the keptn-gitops-demo command and its
# nats-server) stays out of the build context (.dockerignore), so its console script is removed from the venv.
#
# Both stages use python:3.11.16-slim-bookworm, pinned by its full version tag and by the digest of its
# multi-architecture index (docker-library/repo-info, repos/python/remote/3.11.16-slim-bookworm.md). Update the
# tag and the digest together.

# ---- builder: build the project's wheel and install it (with its dependencies) into a virtual environment ----
FROM python:3.11.16-slim-bookworm@sha256:c425d915a89a6dcd3183b1797ad9bd8878caff5a417f6371c8df93c8ea8b727f AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
# .dockerignore lets only the packaging files and the package itself into the build context.
COPY . .
RUN python -m pip wheel --no-deps --wheel-dir /wheels . \
    && python -m venv /opt/keptn-gitops-service \
    && /opt/keptn-gitops-service/bin/pip install /wheels/keptn_gitops_service-*.whl \
    && /opt/keptn-gitops-service/bin/python -m pip uninstall --yes pip setuptools \
    && rm /opt/keptn-gitops-service/bin/keptn-gitops-demo \
    && /opt/keptn-gitops-service/bin/keptn-gitops-service --version

# ---- runtime: the interpreter, git, ssh and the virtual environment; nothing to build with ----
FROM python:3.11.16-slim-bookworm@sha256:c425d915a89a6dcd3183b1797ad9bd8878caff5a417f6371c8df93c8ea8b727f AS runtime

LABEL org.opencontainers.image.title="keptn-gitops-service" \
      org.opencontainers.image.description="Keptn v1 deployment service that delivers through GitOps (Flux, Argo CD)" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.licenses="Apache-2.0"

# git pushes to the GitOps repository; openssh-client carries ssh:// and git@host:path remotes.
RUN apt-get update \
    && apt-get install --yes --no-install-recommends git openssh-client \
    && rm -rf /var/lib/apt/lists/*

# A fixed, unprivileged user (the chart's securityContext runs as 10001 too). The state directory is the chart's
# volume mount point; without a volume it still works, owned by that user.
RUN groupadd --system --gid 10001 keptn \
    && useradd --system --uid 10001 --gid 10001 --home-dir /home/keptn --create-home --shell /usr/sbin/nologin keptn \
    && install --directory --owner 10001 --group 10001 --mode 0750 /var/lib/keptn-gitops-service

COPY --from=builder /opt/keptn-gitops-service /opt/keptn-gitops-service

ENV PATH="/opt/keptn-gitops-service/bin:${PATH}" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    KEPTN_GITOPS_STATE_DIR=/var/lib/keptn-gitops-service

WORKDIR /var/lib/keptn-gitops-service
USER 10001
EXPOSE 8080
ENTRYPOINT ["keptn-gitops-service"]
CMD ["run"]
