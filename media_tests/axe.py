"""axe-core in a Playwright page: the WCAG 2.1 A/AA and best-practice rules, run in the browser.

The engine is vendored for the tests only (media_tests/vendor/, see VENDORED.md there); the app
never serves it. ``axe_violations`` injects it into the page as it is now and returns what
failed, as plain dicts; ``describe`` turns those into an assertion message a page author can act
on (rule, impact, the elements' selectors, what to fix).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from playwright.async_api import Page

AXE_VERSION = "4.14.1"
AXE_JS = Path(__file__).resolve().parent / "vendor" / f"axe-{AXE_VERSION}.min.js"
# WCAG 2.0 and 2.1, levels A and AA, plus Deque's best practices.
TAGS = ("wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice")
NODES_KEPT = 10  # per rule: enough to find the pattern, short enough to read
TEXT_KEPT = 400  # characters of a failure summary or an element's HTML

# Runs the rules on the document (less the excluded selectors) and keeps the violations only.
RUN_JS = """async ([tags, exclude]) => {
    const context = exclude.length ? {exclude: exclude} : document;
    const result = await window.axe.run(context, {
        runOnly: {type: "tag", values: tags},
        resultTypes: ["violations"],
    });
    return result.violations.map((v) => ({
        id: v.id,
        impact: v.impact,
        help: v.help,
        helpUrl: v.helpUrl,
        nodes: v.nodes.map((n) => ({
            // a selector per frame / shadow root on the way to the element
            target: n.target.map((t) => (Array.isArray(t) ? t.join(" >>> ") : String(t))),
            html: n.html,
            failureSummary: n.failureSummary || "",
        })),
    }));
}"""


def _trim(text: str, keep: int = TEXT_KEPT) -> str:
    """Runs of spaces squeezed (line breaks kept: axe puts one between the checks), then cut."""
    text = "\n".join(" ".join(line.split()) for line in text.splitlines() if line.strip())
    return text if len(text) <= keep else text[: keep - 1] + "…"


async def axe_violations(
    page: Page,
    *,
    impacts: Collection[str] = ("serious", "critical"),
    exclude: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """The page's axe violations whose impact is in ``impacts``, worst first.

    Each is ``{"id", "impact", "help", "helpUrl", "nodes": [{"target", "html",
    "failureSummary"}]}``, ``target`` being the element's selectors (one per frame or shadow
    root); ``exclude`` is CSS selectors of regions to leave out. The script is injected once per
    document (again after a navigation); a page with a Content-Security-Policy that forbids inline
    scripts or eval (axe compiles its messages with ``new Function``), such as ours, needs a
    context made with ``bypass_csp=True``.
    """
    if not await page.evaluate("() => typeof window.axe === 'object'"):
        await page.add_script_tag(path=AXE_JS)
        version = await page.evaluate("() => window.axe && window.axe.version")
        assert version == AXE_VERSION, f"axe-core did not load into {page.url}: {version!r}"
    found: list[dict[str, Any]] = await page.evaluate(RUN_JS, [list(TAGS), list(exclude)])
    order = {"critical": 0, "serious": 1, "moderate": 2, "minor": 3}
    kept = []
    for v in found:
        if v["impact"] not in impacts:
            continue
        nodes = [
            {
                "target": list(n["target"]),
                "html": _trim(" ".join(n["html"].split()), 200),
                "failureSummary": _trim(n["failureSummary"]),
            }
            for n in v["nodes"]
        ]
        kept.append(
            {
                "id": v["id"],
                "impact": v["impact"],
                "help": v["help"],
                "helpUrl": v["helpUrl"],
                "nodes": nodes[:NODES_KEPT],
                "more_nodes": max(0, len(nodes) - NODES_KEPT),
            }
        )
    kept.sort(key=lambda v: (order.get(v["impact"], 9), v["id"]))
    return kept


def describe(violations: Sequence[dict[str, Any]]) -> str:
    """One readable block per violated rule: rule, impact, help, then each element and its fix."""
    if not violations:
        return "no axe violations"
    lines = [f"{len(violations)} axe rule(s) violated:"]
    for v in violations:
        lines.append(f"- {v['id']} ({v['impact']}): {v['help']} <{v.get('helpUrl', '')}>")
        for n in v["nodes"]:
            lines.append(f"    {', '.join(n['target'])}  {n['html']}")
            lines.extend(f"      {part}" for part in n["failureSummary"].splitlines())
        if v.get("more_nodes"):
            lines.append(f"    … and {v['more_nodes']} more element(s)")
    return "\n".join(lines)
