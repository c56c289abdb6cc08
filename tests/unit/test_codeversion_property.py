"""Property: a constant inside any module-level construct a function relies on is part of its code
version, while comments and docstrings never are. Each generated project mixes several constructs
(the kinds of code that once gave false cache hits) and one function that uses all of them."""

import tempfile
import textwrap
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from skipwise.core.codeversion import CodeIndex

# name -> (extra files, top-level code of pk/bodies.py, expression `target` evaluates).
# `{c}` is the construct's constant; `{doc}` / `{comment}` vary only documentation.
CONSTRUCTS = {
    "aug_assign": ({}, "AUG = 1.0\nAUG += {c}  # {comment}\n", "AUG"),
    "if_block": ({}, "if True:\n    IFK = {c}\nelse:\n    IFK = 0.0\n", "IFK"),
    "try_block": (
        {},
        'try:\n    def try_helper():\n        """{doc}"""\n        return {c}\nexcept Exception:\n    pass\n',
        "try_helper()",
    ),
    "with_block": ({}, "import contextlib\nwith contextlib.suppress(Exception):\n    WITHK = {c}\n", "WITHK"),
    "conditional_import": (
        {"pk/_label.py": '"""{doc}"""\nLABEL = {c}  # {comment}\n'},
        "try:\n    from pk._label import LABEL\nexcept ImportError:\n    LABEL = 0.0\n",
        "LABEL",
    ),
    "star_import": (
        {"pk/stars.py": "def star_helper():\n    # {comment}\n    return {c}\n"},
        "from pk.stars import *\n",
        "star_helper()",
    ),
    "dotted_chain": (
        {"pk/sub/__init__.py": '"""{doc}"""\n', "pk/sub/deep.py": "def chained():\n    return {c}\n"},
        "import pk.sub.deep\n",
        "pk.sub.deep.chained()",
    ),
    "globals_lookup": ({}, 'def dyn_helper():\n    """{doc}"""\n    return {c}\n', 'globals()["dyn_helper"]()'),
    "dict_mutation": ({}, "CFG = {{'a': 0.0}}\nCFG['u'] = {c}  # {comment}\n", "CFG['u']"),
    "decorator": (
        {},
        "def deco(k):\n    def wrap(fn):\n        return lambda: fn() + k\n    return wrap\n\n@deco({c})\ndef decorated():\n    return 0.0\n",
        "decorated()",
    ),
    "default_argument": ({}, "def defaulted(x={c}):\n    return x\n", "defaulted()"),
    "class_attribute": ({}, 'class Holder:\n    """{doc}"""\n    K = {c}\n', "Holder.K"),
    "nested_module": (
        {"pk/nest/__init__.py": "", "pk/nest/inner.py": '"""{doc}"""\n\n\ndef inner():\n    return {c}\n'},
        "from pk.nest.inner import inner\n",
        "inner()",
    ),
}


def build(root: Path, chosen: list[str], constants: dict[str, float], doc: str, comment: str) -> Path:
    files = {"pk/__init__.py": f'"""{doc}"""\n'}
    top, exprs = [], []
    for name in chosen:
        extra, code, expr = CONSTRUCTS[name]
        fill = {"c": repr(constants[name]), "doc": doc, "comment": comment}
        for rel, text in extra.items():
            files[rel] = text.format(**fill)
        top.append(code.format(**fill))
        exprs.append(expr)
    body = f'def target():\n    """{doc}"""\n    # {comment}\n    return sum([{", ".join(exprs)}])\n'
    files["pk/bodies.py"] = f'"""{doc}"""\n' + "\n".join(top) + "\n\n" + body
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


def digest(root: Path) -> str:
    return CodeIndex(root).version("pk.bodies:target").digest


@settings(max_examples=80, deadline=None)
@given(
    chosen=st.lists(st.sampled_from(sorted(CONSTRUCTS)), min_size=1, max_size=6, unique=True),
    seed=st.integers(1, 1000),
    data=st.data(),
)
def test_constants_in_every_construct_count_and_documentation_does_not(chosen, seed, data):
    constants = {name: float(seed + i) for i, name in enumerate(chosen)}
    mutated_name = data.draw(st.sampled_from(chosen), label="mutated")
    mutated = {**constants, mutated_name: constants[mutated_name] + 0.5}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        base = digest(build(tmp / "base", chosen, constants, "Doc.", "a comment"))
        assert digest(build(tmp / "mutated", chosen, mutated, "Doc.", "a comment")) != base, mutated_name
        assert digest(build(tmp / "documented", chosen, constants, "Other words.", "another comment")) == base
