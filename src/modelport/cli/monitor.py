"""``modelport monitor --policy monitor.toml``: evaluate retraining rules; webhook, registry tag, exit code."""

from __future__ import annotations

import click


@click.command("monitor")
@click.option("--policy", "policy_path", required=True, type=click.Path(dir_okay=False), help="The policy file (TOML).")
@click.option("--dry-run", is_flag=True, help="Evaluate and report; call no webhook and set no tag.")
@click.option("--json", "as_json", is_flag=True, help="Print the evaluation as JSON.")
@click.pass_context
def monitor(ctx: click.Context, policy_path: str, dry_run: bool, as_json: bool) -> None:
    """Evaluate the rules of a policy over the latest windows of a prediction log (drift, estimated and
    realised performance) and act on those that fire: a webhook POST, a registry tag, the exit code.

    \b
    Exit codes: 0 no rule with the exit action fired, 10 (or the policy's [actions.exit] code) one did,
    13 an action failed, other non-zero: an error. See docs/monitoring.md for the policy format.
    """
    from modelport.monitor.policy import Policy

    policy = Policy.load(policy_path)
    result = policy.evaluate()
    done = [] if dry_run else result.act()
    if as_json:
        import json

        click.echo(json.dumps({**result.to_dict(), "actions_done": done}, indent=1))
    else:
        for r in result.results:
            shown = ", ".join("-" if v is None else f"{v:.4g}" for v in r.values)
            state = "FIRED" if r.fired else "ok"
            click.echo(f"{state:5}  {r.rule.name}: {r.rule.when} (for {r.rule.windows}) values [{shown}]"
                       + (f"  ({r.note})" if r.note and not r.fired else ""))
        for line in done:
            click.echo(f"action: {line}")
    ctx.exit(result.exit_code)
