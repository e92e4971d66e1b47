"""The Leaderboard tab: Bradley-Terry strengths per criterion from the arena votes, and agreement.

Everything shown comes from :func:`eval.ratings.leaderboard`; this module only lays it out.
Results are cached on the filters and the newest vote, rating and metric ids (all append-only),
so page loads do not refit the bootstrap when nothing changed.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import gradio as gr

from eval import ratings
from eval.ratings import CRITERIA, CRITERION_LABELS
from eval.ratings.bradley_terry import PRIOR_SD_ELO
from eval.runs.store import Store
from ui.arena import API_VISIBILITY, start_sync

ANY = "any"
STRENGTH_HEADERS = ["rank", "method", "Elo", "95% low", "95% high", "votes", "wins", "losses", "ties", "both bad"]
ALPHA_HEADERS = [
    "criterion",
    "votes: alpha (nominal)",
    "pairs voted twice+",
    "ratings: alpha (ordinal)",
    "assets rated twice+",
]
TAU_HEADERS = ["metric", "group", "methods", "Kendall tau vs overall", "p"]
LIKERT_HEADERS = ["criterion", "method", "mean rating (1-5)", "ratings"]
_CACHE_SIZE = 16


@dataclass
class LeaderboardTab:
    modality: gr.Dropdown
    prompt_set: gr.Dropdown
    include_flagged: gr.Checkbox
    refresh: gr.Button
    summary: gr.Markdown
    strengths: dict[str, gr.Dataframe]
    win_rates: dict[str, gr.Dataframe]
    alpha: gr.Dataframe
    tau: gr.Dataframe
    likert: gr.Dataframe
    raw: gr.JSON


def _fmt(x: Any, digits: int = 3) -> str:
    return "–" if x is None else f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def views(board: dict[str, Any]) -> dict[str, Any]:
    """The tab's tables from a :func:`eval.ratings.leaderboard` result (pure; tested without a browser)."""
    methods = board["methods"]
    out: dict[str, Any] = {"strengths": {}, "win_rates": {}}
    for criterion, data in board["criteria"].items():
        out["strengths"][criterion] = [
            [
                r["rank"],
                r["method"],
                r["elo"],
                r["lower"],
                r["upper"],
                r["votes"],
                r["wins"],
                r["losses"],
                r["tie"],
                r["both_bad"],
            ]
            for r in data["table"]
        ]
        out["win_rates"][criterion] = [
            [
                m,
                *(
                    _fmt(data["win_rate"][i][j], 2) + f" ({data['counts'][i][j]})" if i != j else ""
                    for j in range(len(methods))
                ),
            ]
            for i, m in enumerate(methods)
        ]
    agreement = board["agreement"]
    out["alpha"] = [
        [
            CRITERION_LABELS[c],
            _fmt(agreement["votes_alpha"][c]["alpha"]),
            agreement["votes_alpha"][c]["items"],
            _fmt(agreement["ratings_alpha"][c]["alpha"]),
            agreement["ratings_alpha"][c]["items"],
        ]
        for c in board["criteria"]
    ]
    out["tau"] = [
        [t["metric"], t["group"], t["methods"], _fmt(t["tau"]), _fmt(t["p"])] for t in agreement["metric_tau"]
    ]
    out["likert"] = [
        [CRITERION_LABELS[c], row["method"], row["mean"], row["n"]]
        for c, rows in agreement["likert"].items()
        for row in rows
    ]
    flagged = board["flagged_raters"]
    settings = board["settings"]
    noise = ""
    if flagged:
        used = "included" if board["filters"]["include_flagged"] else "left out"
        noise = f"; {len(flagged)} rater(s) flagged as noise or as steering one method, their votes kept but {used}"
    out["summary"] = (
        f"**{board['votes_used']}** votes from **{board['raters']}** raters on **{len(methods)}** methods"
        f" ({board['votes']} votes match the filters{noise}). Bradley-Terry with a stated prior (Gaussian on the"
        f" strengths, sd {PRIOR_SD_ELO:.0f} Elo points: the regularisation Chatbot Arena's fit uses), ties and"
        f" *both bad* as half a win each; Elo scale (mean 1000); {int(settings['level'] * 100)}% intervals: the"
        f" percentile bootstrap from {settings['n_boot']} resamples of the votes, widened to the posterior's"
        " normal interval where few votes make the resamples collapse."
    )
    unranked = [
        f"{CRITERION_LABELS[c]}: " + ", ".join(f"{m} ({why})" for m, why in data.get("unranked", {}).items())
        for c, data in board["criteria"].items()
        if data["votes"] and data.get("unranked")
    ]
    if unranked:
        out["summary"] += (
            "\n\n**The votes cannot rank these methods yet**, so their gaps to the others come from the prior, not"
            " from the votes; collect more votes: " + "; ".join(unranked) + "."
        )
    return out


def build_leaderboard_tab(store: Store | None = None, *, n_boot: int = 1000) -> LeaderboardTab:
    """Build the Leaderboard in the current Blocks context (call inside ``gr.Tab``).

    API: ``/leaderboard`` (modality, prompt set, include flagged) returns the tables and the raw JSON.
    """
    stores: list[Store] = [store] if store is not None else []
    cache: OrderedDict[tuple, dict[str, Any]] = OrderedDict()

    def get_store() -> Store:
        if not stores:
            stores.append(Store())
        return stores[0]

    start_sync(get_store)
    with gr.Row():
        modality = gr.Dropdown([ANY, "text", "image", "video"], value=ANY, label="Input kind")
        prompt_set = gr.Dropdown([ANY, *ratings.prompt_sets()], value=ANY, label="Prompt set")
        include_flagged = gr.Checkbox(False, label="Include flagged raters (noise, steering)")
        refresh = gr.Button("Refresh", variant="secondary")
    summary = gr.Markdown()
    strengths, win_rates = {}, {}
    with gr.Tabs():
        for criterion in CRITERIA:
            with gr.Tab(CRITERION_LABELS[criterion]):
                strengths[criterion] = gr.Dataframe(headers=STRENGTH_HEADERS, interactive=False, label="Strengths")
                win_rates[criterion] = gr.Dataframe(
                    interactive=False, label="Win rate of the row's method against the column's (votes)"
                )
    with gr.Accordion("Agreement", open=True):
        alpha = gr.Dataframe(headers=ALPHA_HEADERS, interactive=False, label="Krippendorff's alpha between raters")
        tau = gr.Dataframe(
            headers=TAU_HEADERS, interactive=False, label="Human overall ranking vs each automatic metric's ranking"
        )
        likert = gr.Dataframe(headers=LIKERT_HEADERS, interactive=False, label="Likert ratings from the modality tabs")
    with gr.Accordion("Raw data (JSON)", open=False):
        raw = gr.JSON()

    def compute(kind: str, pset: str, flagged: bool) -> tuple[Any, ...]:
        db = get_store()
        version = tuple(
            db.read(sql)[0][0]
            for sql in ("SELECT max(id) FROM votes", "SELECT max(id) FROM ratings", "SELECT max(id) FROM metrics")
        )
        key = (kind, pset, bool(flagged), version)
        if key not in cache:
            cache[key] = ratings.leaderboard(
                db,
                modality=None if kind in (ANY, None, "") else kind,
                prompt_set=None if pset in (ANY, None, "") else pset,
                include_flagged=bool(flagged),
                n_boot=n_boot,
            )
            while len(cache) > _CACHE_SIZE:
                cache.popitem(last=False)
        board = cache[key]
        v = views(board)
        methods = board["methods"]
        rate_headers = ["row \\ column", *methods]
        return (
            v["summary"],
            *(gr.Dataframe(value=v["strengths"][c]) for c in CRITERIA),
            *(gr.Dataframe(value=v["win_rates"][c], headers=rate_headers) for c in CRITERIA),
            v["alpha"],
            v["tau"],
            v["likert"],
            json.loads(json.dumps(board)),
        )

    outputs = [summary, *strengths.values(), *win_rates.values(), alpha, tau, likert, raw]
    gr.on(
        [refresh.click, modality.change, prompt_set.change, include_flagged.change],
        compute,
        [modality, prompt_set, include_flagged],
        outputs,
        api_name="leaderboard",
        api_visibility=API_VISIBILITY,
    )
    gr.on(None, lambda: compute(ANY, ANY, False), None, outputs, api_visibility="private")
    return LeaderboardTab(
        modality, prompt_set, include_flagged, refresh, summary, strengths, win_rates, alpha, tau, likert, raw
    )
