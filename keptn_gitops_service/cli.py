"""``keptn-gitops-service``: run | deploy | config check [--online]. (The demo is the ``keptn-gitops-demo`` command.)"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import tempfile
import uuid
from collections.abc import Sequence
from pathlib import Path

from keptn_gitops_service import SERVICE_NAME, __version__
from keptn_gitops_service.clock import SystemClock
from keptn_gitops_service.config.loader import load_config
from keptn_gitops_service.config.model import GitOpsConfig
from keptn_gitops_service.errors import ConfigError, GitOpsServiceError
from keptn_gitops_service.keptn.events import KeptnEvent, to_structured
from keptn_gitops_service.logs import configure_logging
from keptn_gitops_service.settings import Settings

EXIT_PASS, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    except GitOpsServiceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAIL
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=SERVICE_NAME, description="Keptn deployments through GitOps.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the service (Keptn events over NATS)")
    run.add_argument("--config", type=Path, help="config file (default: $KEPTN_GITOPS_CONFIG)")
    run.set_defaults(func=_run)

    deploy = commands.add_parser("deploy", help="one deployment without Keptn (same code path as an event)")
    for name in ("project", "stage", "service", "image"):
        deploy.add_argument(f"--{name}", required=True)
    deploy.add_argument("--config", type=Path)
    deploy.add_argument("--no-wait", action="store_true", help="finish after the push")
    deploy.set_defaults(func=_deploy)

    config = commands.add_parser("config", help="configuration tools")
    config_commands = config.add_subparsers(dest="config_command", required=True)
    check = config_commands.add_parser("check", help="validate a config file")
    check.add_argument("path", type=Path)
    check.add_argument(
        "--online",
        action="store_true",
        help="also reach every repository with its credentials and load the kubeconfig, as `run` does at start-up",
    )
    check.set_defaults(func=_config_check)
    return parser


def _load(settings: Settings, path: Path | None) -> GitOpsConfig:
    path = path or settings.config_path
    if path is None:
        raise ConfigError(["no config file: pass --config PATH or set KEPTN_GITOPS_CONFIG"])
    return load_config(path)


def _config_check(args: argparse.Namespace) -> int:
    config = load_config(args.path)
    summary = f"{len(config.repositories)} repositories, {len(config.rules)} rules"
    if args.online:
        from keptn_gitops_service.workflow.preflight import startup_problems

        settings = Settings.from_env()
        with tempfile.TemporaryDirectory(prefix="keptn-gitops-check-") as home:
            problems = asyncio.run(
                startup_problems(
                    config,
                    helper_dir=Path(home),
                    kubeconfig=settings.kubeconfig,
                    git_timeout=settings.git_timeout_seconds,
                )
            )
        for problem in problems:
            print(f"error: {problem}", file=sys.stderr)
        if problems:
            return EXIT_FAIL
        summary += "; every repository reachable"
    print(f"{args.path}: OK ({summary})")
    return EXIT_PASS


def _run(args: argparse.Namespace) -> int:
    from keptn_gitops_service.service import Service

    settings = Settings.from_env()
    configure_logging(settings.log_level, settings.log_format)
    config = _load(settings, args.config)

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await Service(settings, config).run(stop)

    asyncio.run(serve())
    return EXIT_PASS


class _ConsoleSink:
    """Prints replies instead of publishing them (``deploy`` runs without Keptn)."""

    async def publish(self, event: KeptnEvent) -> None:
        data = event.data
        line = f"{event.type.removeprefix('sh.keptn.event.')}: status={data.get('status')}"
        if "result" in data:
            line += f" result={data.get('result')} message={json.dumps(data.get('message', ''))}"
        elif data.get("message"):  # a .started that says where the work is (a pull request)
            line += f" message={json.dumps(data['message'])}"
        print(line, flush=True)


def _deploy(args: argparse.Namespace) -> int:
    from keptn_gitops_service.forges.registry import Forges
    from keptn_gitops_service.reconcile.dispatch import Reconciler
    from keptn_gitops_service.reconcile.kube import KubeHub, load_client
    from keptn_gitops_service.service import new_writer
    from keptn_gitops_service.state.store import SqliteStateStore
    from keptn_gitops_service.workflow.deployment import DeploymentBody
    from keptn_gitops_service.workflow.lifecycle import Lifecycle
    from keptn_gitops_service.workflow.pullrequests import PullRequestGate

    settings = Settings.from_env()
    configure_logging(os.environ.get("LOG_LEVEL", "WARNING"), "console")
    config = _load(settings, args.config)
    event = KeptnEvent(
        id=str(uuid.uuid4()),
        type="sh.keptn.event.deployment.triggered",
        source=f"{SERVICE_NAME}/cli",
        shkeptncontext=str(uuid.uuid4()),
        data={
            "project": args.project,
            "stage": args.stage,
            "service": args.service,
            "configurationChange": {"values": {"image": args.image}},
            "deployment": {"deploymentstrategy": "direct", "deploymentURIsLocal": None},
        },
        time=SystemClock().now(),
    )

    async def deploy() -> int:
        clock = SystemClock()
        reconciler = Reconciler(lambda: KubeHub(load_client(settings.kubeconfig)), clock)
        store = SqliteStateStore(settings.state_dir / "state.sqlite3")
        writer, forges = new_writer(settings), Forges(clock)
        # a rule in pullRequest mode opens its pull request and waits for the merge here too
        gate = PullRequestGate(writer, forges, store, clock, bridge_url=settings.keptn_bridge_url)
        body = DeploymentBody(config, writer, reconciler, clock, wait=not args.no_wait, pull_requests=gate)
        lifecycle = Lifecycle(config, store, _ConsoleSink(), clock, tasks={"deployment": body})
        try:
            finished = await lifecycle.handle(to_structured(event))
        finally:
            await reconciler.close()
            await forges.close()
            await writer.close()
            await store.close()
        if finished is None:
            print(
                f"error: no rule in {config.source} matches {args.project}/{args.stage}/{args.service}", file=sys.stderr
            )
            return EXIT_USAGE
        if finished.commit:
            print(f"commit: {finished.commit}")
        return EXIT_PASS if finished.passed else EXIT_FAIL

    return asyncio.run(deploy())
