"""The YAML limits (editing/yamllimits.py): each one refuses what is beyond it, with a message naming its setting,
and lets through what is exactly at it."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from yamlcheck import TAIL, nested_aliases

from keptn_gitops_service.editing.imageref import parse_image
from keptn_gitops_service.editing.kustomize import set_kustomize_image
from keptn_gitops_service.editing.markers import set_marked_values
from keptn_gitops_service.editing.revert import scalar_changes
from keptn_gitops_service.editing.yamledit import get_scalar, load_documents, set_scalar
from keptn_gitops_service.editing.yamllimits import YamlLimits, limited
from keptn_gitops_service.errors import EditError, EditTimeoutError, YamlLimitError


def test_the_issues_nested_alias_file_is_refused_naming_the_limit() -> None:
    text = nested_aliases()
    assert len(text.encode()) < 500
    for operation in (
        lambda: set_scalar(text, "image.tag", "v2"),
        lambda: get_scalar(text, "image.tag"),
        lambda: load_documents(text),
        lambda: scalar_changes(text, text.replace("v1", "v2")),
        lambda: set_marked_values(text, image=parse_image("x/y:1"), policy=None, keptn_values=lambda _: "1"),
    ):
        with pytest.raises(YamlLimitError) as error:
            operation()
        assert str(error.value) == ("YAML aliases expand to more than 100000 nodes (limit KEPTN_GITOPS_YAML_MAX_NODES)")


def test_alias_counting_is_linear_in_the_graph_so_an_exponential_bomb_is_refused_at_once() -> None:
    """60 levels of doubling expand to 2**60 nodes; the count memoises per node, so this is a few hundred steps."""
    with pytest.raises(YamlLimitError, match="more than 100000 nodes"):
        load_documents(nested_aliases(levels=60, fanout=2))


def test_alias_expansion_exactly_at_the_limit_passes_one_more_is_refused() -> None:
    # a0 is a sequence of 10 scalars (11 nodes); every further alias of it brings in 11 nodes
    text = "a0: &a0 [" + ", ".join("x" * 10) + "]\nuses: [" + ", ".join(["*a0"] * 10) + "]\n" + TAIL
    with limited(YamlLimits(max_alias_nodes=110)):
        assert set_scalar(text, "image.tag", "v2").endswith("tag: v2\n")
    with limited(YamlLimits(max_alias_nodes=109)), pytest.raises(YamlLimitError, match="more than 109 nodes"):
        set_scalar(text, "image.tag", "v2")


@pytest.mark.parametrize(
    "text",
    ["a: &a [*a]\n", "a: &a {b: [1, *a]}\n", "- &a\n  - x\n  - *a\n"],
    ids=["sequence", "mapping", "block"],
)
def test_a_recursive_alias_is_refused(text: str) -> None:
    with pytest.raises(YamlLimitError, match="recursive alias"):
        load_documents(text)


def nested(levels: int, *, flow: bool) -> str:
    if flow:
        return "[" * levels + "x" + "]" * levels + "\n"
    return "".join("  " * i + f"k{i}:\n" for i in range(levels - 1)) + "  " * (levels - 1) + "k: v\n"


@pytest.mark.parametrize("flow", [True, False], ids=["flow", "block"])
def test_nesting_exactly_at_the_limit_passes_deeper_is_refused_before_the_stack_runs_out(flow: bool) -> None:
    # block: levels mappings + the leaf scalar; flow: levels sequences + the scalar
    load_documents(nested(99, flow=flow))
    with pytest.raises(YamlLimitError) as error:
        load_documents(nested(101, flow=flow))
    assert "YAML nesting is deeper than 100 levels at line" in str(error.value)
    assert str(error.value).endswith("(limit KEPTN_GITOPS_YAML_MAX_DEPTH)")
    with pytest.raises(YamlLimitError, match="deeper than 100 levels"):  # far beyond Python's recursion limit
        load_documents(nested(100_000, flow=True))


def test_nesting_through_aliases_counts_the_expanded_depth() -> None:
    inner = "[" * 60 + "x" + "]" * 60
    text = f"a: &a {inner}\nb: " + "[" * 60 + "*a" + "]" * 60 + "\n"
    with pytest.raises(YamlLimitError, match="deeper than 100 levels"):
        load_documents(text)
    with limited(YamlLimits(max_depth=130)):
        assert len(load_documents(text)) == 1


def test_documents_exactly_at_the_limit_pass_one_more_is_refused() -> None:
    docs = "---\nx: 1\n" * 1000
    with limited(YamlLimits(max_documents=1000)):
        assert len(load_documents(docs)) == 1000
        with pytest.raises(YamlLimitError) as error:
            set_scalar(docs + "---\n" + TAIL, "image.tag", "v2")
    assert str(error.value) == "the file has more than 1000 YAML documents (limit KEPTN_GITOPS_YAML_MAX_DOCUMENTS)"


def test_the_size_limit_counts_utf8_bytes() -> None:
    text = TAIL + "note: " + "ö" * 600 + "\n"  # 1,200 bytes of 'ö'
    size = len(text.encode())
    with limited(YamlLimits(max_file_bytes=size)):
        assert set_scalar(text, "image.tag", "v2").startswith("image:\n  tag: v2\n")
    with limited(YamlLimits(max_file_bytes=size - 1)), pytest.raises(YamlLimitError) as error:
        set_scalar(text, "image.tag", "v2")
    assert str(error.value) == (
        f"the file has {size} bytes, more than the {size - 1} bytes allowed (limit KEPTN_GITOPS_MAX_FILE_BYTES)"
    )


@pytest.mark.parametrize("documents", [1, 900], ids=["one document", "many small documents"])
def test_the_deadline_stops_composing_a_slow_file(documents: int) -> None:
    """The clock is looked at every few hundred nodes of the whole file, however small its documents are."""
    if documents == 1:
        text = "items:\n" + "".join(f"  - k{i}: v\n" for i in range(2000)) + TAIL
    else:  # every document far below the few hundred nodes between two looks
        text = "".join(f"---\nitems: [a{i}, b, c]\n" for i in range(documents))
    with limited(YamlLimits(), seconds=0.0), pytest.raises(EditTimeoutError) as error:
        load_documents(text)
    assert str(error.value) == (
        "editing took longer than 0 s; the file is too slow to process (limit KEPTN_GITOPS_EDIT_TIMEOUT)"
    )
    assert len(load_documents(text)) == documents  # no deadline outside the context


def test_merge_keys_and_a_few_aliases_within_the_limits_still_edit() -> None:
    text = "base: &base {pullPolicy: Always}\nimage:\n  <<: *base\n  tag: v1\nother: *base\n"
    assert set_scalar(text, "image.tag", "v2") == text.replace("tag: v1", "tag: v2")
    kustomization = "images:\n  - name: x/y\n    newTag: '1'\nlabels: &l {a: b}\nmore: *l\n"
    assert "newTag: '2'" in set_kustomize_image(kustomization, name="x/y", image=parse_image("x/y:2"))


def test_limit_errors_are_edit_errors() -> None:
    assert issubclass(YamlLimitError, EditError) and issubclass(EditTimeoutError, YamlLimitError)


# ---- one scan per text within a context ---------------------------------------------------------------------

KUSTOMIZATION = (
    "# carts: applied by Flux\napiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
    "resources:\n  - deployment.yaml\nimages:\n  - name: docker.io/keptnexamples/carts\n"
    '    newTag: 0.13.1 # {"$imagepolicy": "flux-system:carts:tag"}\n'
)


def scans(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The texts PyYAML's scanner scans to their end from now on."""
    started: list[str] = []
    original = yaml.scanner.Scanner.fetch_stream_end

    def counted(self: Any) -> None:
        started.append(self.buffer[:-1])  # the reader keeps the text plus a closing NUL
        original(self)

    monkeypatch.setattr(yaml.scanner.Scanner, "fetch_stream_end", counted)
    return started


def test_within_a_context_an_edit_scans_the_old_and_the_new_text_once(monkeypatch: pytest.MonkeyPatch) -> None:
    image = parse_image("docker.io/keptnexamples/carts:0.14.0")
    outside = set_kustomize_image(KUSTOMIZATION, "docker.io/keptnexamples/carts", image)
    started = scans(monkeypatch)
    assert set_kustomize_image(KUSTOMIZATION, "docker.io/keptnexamples/carts", image) == outside
    assert started.count(KUSTOMIZATION) == 3  # read, composed to find the entry, loaded again by the safety net
    started.clear()
    with limited(YamlLimits()):
        assert set_kustomize_image(KUSTOMIZATION, "docker.io/keptnexamples/carts", image) == outside
    assert started.count(KUSTOMIZATION) == 1
    assert started.count(outside) == 1  # the safety net's parse of the new text is never skipped
    started.clear()
    with limited(YamlLimits()):  # a new context starts from nothing
        set_kustomize_image(KUSTOMIZATION, "docker.io/keptnexamples/carts", image)
    assert started.count(KUSTOMIZATION) == 1


def test_a_text_loaded_again_in_a_context_is_a_copy_the_caller_may_change() -> None:
    with limited(YamlLimits()):
        first = load_documents(KUSTOMIZATION)
        first[0]["images"][0]["newTag"] = "changed"
        first.append("more")
        again = load_documents(KUSTOMIZATION)
    assert again == load_documents(KUSTOMIZATION)
    assert again[0]["images"][0]["newTag"] == "0.13.1" and len(again) == 1


@pytest.mark.parametrize(
    "text",
    ["a: [1, 2\nimage:\n  tag: v1\n", "image: {tag: v1}\nkey: 'unterminated\n", "image:\n  tag: v1\n\x07bell: 1\n"],
    ids=["unclosed flow", "unterminated quote", "control character"],
)
def test_a_text_that_fails_fails_the_same_way_every_time_within_a_context(text: str) -> None:
    def error() -> str:
        with pytest.raises(EditError) as caught:
            set_scalar(text, "image.tag", "v2")
        return str(caught.value)

    outside = error()
    with limited(YamlLimits()):
        assert [error(), error()] == [outside, outside]
        with pytest.raises(EditError) as caught:
            load_documents(text)
    assert str(caught.value) in outside


def test_limits_hold_for_a_text_already_parsed_in_the_context() -> None:
    """The events of a text are kept, not the verdict: every loader checks the limits again on them."""
    deep = "[" * 60 + "x" + "]" * 60 + "\n"
    text = f"a: &a {deep}b: " + "[" * 60 + "*a" + "]" * 60 + "\n" + TAIL
    with limited(YamlLimits(max_depth=130)):
        get_scalar(text, "image.tag")  # composed and kept
        assert get_scalar(text, "image.tag") == "v1"
    with limited(YamlLimits(max_depth=100)):
        for _ in range(2):
            with pytest.raises(YamlLimitError, match="deeper than 100 levels"):
                load_documents(text)
    bomb = nested_aliases()
    with limited(YamlLimits()):
        for _ in range(2):
            with pytest.raises(YamlLimitError, match="more than 100000 nodes"):
                get_scalar(bomb, "image.tag")


def test_the_marker_scanner_always_scans_so_it_sees_the_comments() -> None:
    image = parse_image("docker.io/keptnexamples/carts:0.14.0")
    outside = set_marked_values(KUSTOMIZATION, image, policy="flux-system:carts")
    assert "newTag: 0.14.0 #" in outside
    with limited(YamlLimits()):
        load_documents(KUSTOMIZATION)  # its events are kept in the context
        assert set_marked_values(KUSTOMIZATION, image, policy="flux-system:carts") == outside
