"""The method list by hardware: each label says its expected time here; the quick ones are ticked at first."""

from __future__ import annotations

import pytest

from methods.base import Asset, Mesh, Method
from methods.registry import register, unregister
from ui import jobs

PREFIX = "choices-test-"


class ChoicesTestQuick(Method):
    """A tetrahedron in a fifth of a second on a CPU."""

    id = PREFIX + "quick"
    label = "Test quick"
    modalities = ("text", "video")
    family = "procedural (tests)"
    representation = "mesh"
    seconds_gpu = 0.1
    seconds_cpu = 0.2

    def run(self, inputs, settings):
        yield from ()
        return Asset(
            mesh=Mesh([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1.0]], [[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])
        )


class ChoicesTestSlow(ChoicesTestQuick):
    """Half an hour on a CPU, fifteen seconds on a GPU (like Shap-E)."""

    id = PREFIX + "slow"
    label = "Test slow"
    seconds_gpu = 15.0
    seconds_cpu = 2000.0


@pytest.fixture()
def slow_method():
    for cls in (ChoicesTestQuick, ChoicesTestSlow):
        register(cls)
    yield ChoicesTestSlow.id
    for cls in (ChoicesTestQuick, ChoicesTestSlow):
        unregister(cls.id)


def _ours(choices, ticked):
    ours = [(label, mid) for label, mid in choices if mid.startswith(PREFIX)]
    return dict((mid, label) for label, mid in ours), [mid for mid in ticked if mid.startswith(PREFIX)]


def test_cpu_labels_show_expected_time_and_tick_only_quick_methods(slow_method, monkeypatch):
    from ui import generate

    monkeypatch.setattr(generate.runtime, "gpu_present", lambda: False)
    labels, ticked = _ours(*generate.method_choices("video")[:2])
    assert labels == {PREFIX + "quick": "Test quick (~1 s)", PREFIX + "slow": "Test slow (~33 min)"}
    assert ticked == [PREFIX + "quick"]


def test_gpu_ticks_what_is_quick_there(slow_method, monkeypatch):
    from ui import generate

    monkeypatch.setattr(generate.runtime, "gpu_present", lambda: True)
    labels, ticked = _ours(*generate.method_choices("video")[:2])
    assert labels[PREFIX + "slow"] == "Test slow (~15 s)"
    assert PREFIX + "slow" in ticked


def test_the_fastest_is_ticked_when_none_is_quick(slow_method, monkeypatch):
    from ui import generate

    monkeypatch.setattr(
        generate,
        "listing",
        lambda modality: [{"id": ChoicesTestSlow.id, "label": "Test slow", "available": True, "reason": "ready"}],
    )
    monkeypatch.setattr(generate.runtime, "gpu_present", lambda: False)
    assert generate.method_choices("video")[1] == [ChoicesTestSlow.id]


def test_a_slow_choice_says_its_expected_time_before_and_while_it_runs(slow_method, monkeypatch):
    monkeypatch.setattr(jobs, "can_run_again", lambda: False)
    job = jobs.plan_job("text", "a mug", [ChoicesTestSlow.id], 0)
    assert job.runs[0].expected == "about 33 min on this CPU"
    slot = jobs.SlotState(ChoicesTestSlow.id, "Test slow", expected=job.runs[0].expected)
    assert slot.status_markdown() == "⏳ Waiting for its turn… (expected: about 33 min on this CPU)"
    slot.state, slot.stage, slot.message = "running", "sample", "step 1/3"
    assert slot.status_markdown().endswith("step 1/3 (expected: about 33 min on this CPU)")


def test_cpu_defaults_are_the_families_for_text_and_the_two_video_methods_side_by_side(monkeypatch):
    from ui import generate

    monkeypatch.setattr(generate.runtime, "gpu_present", lambda: False)
    assert generate.method_choices("text")[1] == ["vae", "gan", "ddpm", "score-sde"]
    # neither finishes within a minute on a CPU: the fastest and those within PEER_FACTOR of it
    assert generate.method_choices("video")[1] == ["nerf", "gaussian-splatting"]
    choices, _, notes = generate.method_choices("text")
    labels = dict((mid, label) for label, mid in choices)
    if "shap-e" in labels:
        assert labels["shap-e"].endswith("(~33 min)")
    else:  # weights not cached here: listed once, under the choices, with its reason
        assert sum(n.startswith("**Shap-E**: ") for n in notes) == 1


def test_when_nothing_can_run_the_note_says_what_would(monkeypatch):
    from ui import generate

    rows = [
        {"id": "shap-e", "label": "Shap-E", "available": False,
         "reason": "weights for openai/shap-e-img2img are not in the cache and the hub is unreachable"},
        {"id": "x", "label": "X", "available": False, "reason": "Python package(s) not installed: xyz"},
    ]  # fmt: skip
    monkeypatch.setattr(generate, "listing", lambda modality: rows)
    choices, ticked, notes = generate.method_choices("image")
    assert choices == [] and ticked == []
    note = generate.unavailable_note("image", notes, len(choices))
    assert note.startswith("**No method for this input can run on this machine.**")
    assert "- **Shap-E**: weights for openai/shap-e-img2img" in note
    assert "network access" in note and "pip install" in note
    assert "`python -m methods list --modality image`" in note
    # with something to run, the note only lists the others
    assert generate.unavailable_note("image", notes, 1).startswith("Cannot run on this machine:\n- **Shap-E**")


def test_a_new_stage_reaches_the_slot_at_once_and_meshing_says_so(slow_method, monkeypatch):
    """After "evaluate 100%" the mesh stage shows at once, even when it comes within the throttle's interval."""
    from methods.base import Progress

    class Meshes(ChoicesTestQuick):
        id = PREFIX + "meshes"

        def run(self, inputs, settings):
            yield Progress("evaluate", 1.0, "held-out view 3 of 3")
            yield Progress("mesh", None, "marching cubes at 64^3")
            return (yield from super().run(inputs, settings))

    register(Meshes)
    try:
        monkeypatch.setattr(jobs._Throttle, "due", lambda self: False)  # as if every event came within the interval
        job = jobs.plan_job("text", "a mug", [Meshes.id], 0)
        seen = [state.slots[0].status_markdown() for state in jobs.run_job(job)]
        assert any(s.startswith("⚙️ **meshing** — marching cubes at 64^3") for s in seen), seen
    finally:
        unregister(Meshes.id)
