"""Key layout and the validation of namespaces and node ids."""

from __future__ import annotations

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from car_dream.keys import Keys, validate_namespace, validate_node_id

NODE_ID_CHARS = set(string.ascii_letters + string.digits + "_.:@/+=-")


@pytest.mark.parametrize("ns", ["default", "a", "A-b_c.d", "0", "x" * 64])
def test_valid_namespaces_are_returned_unchanged(ns: str) -> None:
    assert validate_namespace(ns) == ns


@pytest.mark.parametrize(
    "ns",
    [
        "",
        "x" * 65,
        "a b",
        "{ns}",
        "a{b",
        "a}b",
        "ns:1",
        "a/b",
        "é",
        "tab\t",
        "ns\n",
        "\nns",
        None,
        5,
    ],
)
def test_invalid_namespaces_are_rejected(ns: object) -> None:
    with pytest.raises(ValueError, match="invalid namespace"):
        validate_namespace(ns)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "node_id", ["a", "fact:1", "user@host/x+y=z-_.", "0", "x" * 200, "dream.tool.0123abcd"]
)
def test_valid_node_ids_are_returned_unchanged(node_id: str) -> None:
    assert validate_node_id(node_id) == node_id


@pytest.mark.parametrize(
    "node_id",
    [
        "",
        "x" * 201,
        "a b",
        "{a}",
        "a{",
        "a}",
        "tab\there",
        "a\n",
        "a\r\n",
        " a",
        "é",
        "a*",
        None,
        5,
    ],
)
def test_invalid_node_ids_are_rejected(node_id: object) -> None:
    with pytest.raises(ValueError, match="invalid node id"):
        validate_node_id(node_id)  # type: ignore[arg-type]


def test_prefix_carries_the_namespace_hash_tag() -> None:
    keys = Keys("ns-1")
    assert keys.prefix == "car-dream:{ns-1}:"
    assert keys.node("x") == "car-dream:{ns-1}:node:x"
    assert keys.dependents("x") == "car-dream:{ns-1}:deps:x"
    assert keys.kind("fact") == "car-dream:{ns-1}:kind:fact"
    assert keys.lock == "car-dream:{ns-1}:lock"


def test_every_key_of_a_namespace_starts_with_its_prefix_and_names_differ() -> None:
    keys = Keys("abc")
    props = [name for name, attr in vars(Keys).items() if isinstance(attr, property)]
    names = [getattr(keys, p) for p in props if p != "prefix"]
    names += [keys.node("n"), keys.dependents("n"), keys.kind("fact")]
    assert len(names) > 15
    assert all(n.startswith("car-dream:{abc}:") for n in names)
    assert len(set(names)) == len(names), "two key properties share one Redis key"


def test_two_namespaces_share_no_key() -> None:
    a, b = Keys("a"), Keys("b")
    assert a.node("x") != b.node("x")
    assert not a.prefix.startswith(b.prefix) and not b.prefix.startswith(a.prefix)


def test_keys_refuses_an_invalid_namespace() -> None:
    with pytest.raises(ValueError):
        Keys("bad ns")


@given(st.text(max_size=250))
def test_validate_node_id_accepts_only_the_id_alphabet(text: str) -> None:
    try:
        validate_node_id(text)
    except ValueError:
        ok = False
    else:
        ok = True
    expected = 1 <= len(text) <= 200 and set(text) <= NODE_ID_CHARS
    assert ok == expected


@given(
    st.text(alphabet=sorted(NODE_ID_CHARS), min_size=1, max_size=150),
    st.sampled_from("{} \t\n\r\x0b\x0c\u00a0\u2028"),
)
def test_validate_node_id_never_accepts_braces_or_whitespace(text: str, bad: str) -> None:
    # ``text`` alone is a valid id: only the inserted character can make it invalid.
    assert validate_node_id(text) == text
    for candidate in (bad + text, text + bad, text[:1] + bad + text[1:]):
        with pytest.raises(ValueError):
            validate_node_id(candidate)


@given(st.text(max_size=80))
def test_validate_namespace_accepts_only_its_alphabet(text: str) -> None:
    allowed = set(string.ascii_letters + string.digits + "_.-")
    try:
        validate_namespace(text)
    except ValueError:
        ok = False
    else:
        ok = True
    assert ok == (1 <= len(text) <= 64 and set(text) <= allowed)
