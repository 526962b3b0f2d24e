"""``tickets shadow|canary|rollback|promote|status``: trying a model on live traffic and going
back. Setting or stopping a challenger is a compare-and-set on its pointer (no Prefect needed);
rollback and promotion from shadow run their flows (the promotion lock, events, notifications)."""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from core.settings import Settings

COMMANDS = ("shadow", "canary", "rollback", "promote", "status")


def add_commands(commands: Any) -> None:
    """The rollout subcommands, on the ``tickets`` parser's subparsers."""
    shadow = commands.add_parser("shadow", help="score live tickets with a challenger, unseen")
    shadow_actions = shadow.add_subparsers(dest="action", required=True)
    start = shadow_actions.add_parser("start", help="shadow VERSION (model version or bundle id)")
    start.add_argument("version")
    start.add_argument("--share", type=float, help="share of tickets scored (default: setting)")
    shadow_actions.add_parser("stop", help="stop the shadow")

    canary = commands.add_parser("canary", help="let a challenger answer a share of tickets")
    canary_actions = canary.add_subparsers(dest="action", required=True)
    start = canary_actions.add_parser("start", help="canary VERSION --percent P")
    start.add_argument("version")
    start.add_argument("--percent", type=float, required=True, help="share of tickets, 0-100")
    canary_actions.add_parser("stop", help="stop the canary (the champion answers all)")

    rollback = commands.add_parser("rollback", help="move the champion back to an earlier one")
    rollback.add_argument("--to", help="model version or bundle id (default: the previous one)")
    rollback.add_argument("--reason", default="operator", help="kept and announced")

    promote = commands.add_parser("promote", help="promote the shadow on live labelled evidence")
    promote.add_argument("--from-shadow", action="store_true", required=True)
    promote.add_argument("--window", help="how far back to read evidence (default: setting)")

    status = commands.add_parser("status", help="champion, challenger, last decisions")
    status.add_argument("--json", action="store_true")


def run(settings: Settings, args: argparse.Namespace) -> int:
    if args.command == "shadow" or args.command == "canary":
        return _challenger(settings, args)
    if args.command == "status":
        return _status(settings, args.json)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    if args.command == "rollback":
        from core.io.store import open_store
        from core.release.bundle import champion_history
        from core.release.rollout import rollback_target

        rollback_target(champion_history(open_store(settings)), args.to)  # fail fast, in one line
        from flows.prefect_server import temporary_prefect_api
        from flows.rollout import rollback

        with temporary_prefect_api():
            result = rollback(to=args.to, reason=args.reason, settings=settings)
        print(
            f"rolled back: model {result['challenger_version']} is the champion again "
            f"(was {result['champion_version']}); the service serves it within one poll"
        )
        return 0
    from flows.prefect_server import temporary_prefect_api
    from flows.rollout import promote_shadow

    with temporary_prefect_api():
        outcome = promote_shadow(
            window=args.window or settings.rollout.evidence_window, settings=settings
        )
    verdict = "promoted" if outcome["promoted"] else "not promoted"
    print(f"shadow {outcome.get('challenger_version', '-')}: {verdict}: {outcome['reason']}")
    return 0


def _challenger(settings: Settings, args: argparse.Namespace) -> int:
    from core.io.store import open_store
    from core.release.rollout import start_challenger, stop_challenger

    store = open_store(settings)
    if args.action == "stop":
        stopped = stop_challenger(store, "stopped by an operator")
        if stopped is None:
            print("no challenger was active")
        else:
            print(f"{args.command} {stopped.version} stopped")
        return 0
    if args.command == "canary":
        pointer = start_challenger(store, args.version, "canary", percent=args.percent)
        print(f"canary {pointer.version}: answers {pointer.percent:g}% of tickets, sticky by key")
    else:
        share = settings.rollout.shadow_share if args.share is None else args.share
        pointer = start_challenger(store, args.version, "shadow", shadow_share=share)
        print(f"shadow {pointer.version}: scores {pointer.shadow_share:.0%} of tickets, unseen")
    print("the service picks it up within one poll interval")
    return 0


def status(settings: Settings, decisions: int = 10) -> dict[str, Any]:
    from core.io.store import open_store
    from core.predlog import open_prediction_log
    from core.release.bundle import champion_history, read_champion
    from core.release.rollout import read_challenger
    from tasks.locks import PROMOTION_LOCK

    store = open_store(settings)
    champion, _ = read_champion(store)
    challenger, _ = read_challenger(store)
    since = (datetime.now(UTC) - timedelta(days=settings.feedback_retention_days)).isoformat()
    with open_prediction_log(settings) as log:
        recent = log.promotions(since)[-decisions:]
        holder = log.lock_holder(PROMOTION_LOCK)
    history = champion_history(store)
    return {
        "champion": champion.model_dump(mode="json") if champion else None,
        "challenger": challenger.model_dump(mode="json") if challenger else None,
        "canary_percent": challenger.percent if challenger and challenger.mode == "canary" else 0,
        "earlier_champions": [
            {"model_version": e.model_version, "bundle_id": e.bundle_id, "since": e.promoted_at}
            for e in reversed(history[:-1])
        ][:10],
        "decisions": [record.as_dict() for record in reversed(recent)],
        "promotion_lock": asdict(holder) if holder else None,
    }


def _status(settings: Settings, as_json: bool) -> int:
    report = status(settings)
    if as_json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"champion: {_champion_line(report['champion'])}")
    print(f"challenger: {_challenger_line(report['challenger'])}")
    print(f"canary share: {report['canary_percent']:g}%")
    lock = report["promotion_lock"]
    print(
        "promotion lock: "
        + (
            f"held by process {lock['pid']} on {lock['host']} ({lock['purpose']}) since "
            f"{lock['acquired_at'][:19]}, lease until {lock['expires_at'][:19]}"
            if lock
            else "free"
        )
    )
    earlier = ", ".join(e["model_version"] or e["bundle_id"] for e in report["earlier_champions"])
    print(f"earlier champions (newest first): {earlier or 'none'}")
    print("last decisions:")
    for record in report["decisions"]:
        name = record["challenger_version"] or record["challenger"]
        verdict = {"rollback": "rolled back to", "canary-rollback": "canary stopped:"}.get(
            record["kind"], "promoted" if record["promoted"] else "not promoted:"
        )
        when = record["decided_at"][:19]
        print(f"  {when}  {record['kind']:<15} {verdict} {name}: {record['reason'][:120]}")
    if not report["decisions"]:
        print("  none")
    return 0


def _champion_line(champion: dict[str, Any] | None) -> str:
    if champion is None:
        return "none yet"
    return (
        f"model {champion['model_version']} ({champion['family']}), bundle "
        f"{champion['bundle_id']}, since {champion['promoted_at']}"
    )


def _challenger_line(challenger: dict[str, Any] | None) -> str:
    if challenger is None:
        return "none"
    version = challenger["model_version"] or challenger["bundle_id"]
    if challenger["mode"] == "canary":
        return f"model {version} in canary, {challenger['percent']:g}% of tickets"
    if challenger["mode"] == "shadow":
        return f"model {version} in shadow, {challenger['shadow_share']:.0%} of tickets"
    return f"none (model {version} stopped {challenger['stopped_at']}: {challenger['stop_reason']})"
