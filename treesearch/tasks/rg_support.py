"""Which reasoning-gym datasets ``rg:<dataset>`` serves, and why the others are refused.

Every dataset reasoning-gym 0.1.25 lists (106; the version is pinned) was built with its
default config and put through the conformance kit (``treesearch.tasks.testing.check_task``).
Building one of those below fails the kit, so it is refused when it is built
(``REFUSED``: dataset -> why), naming the dataset and the reason; every other one builds
and passes (``tests/test_rg_tasks.py`` holds both to it). The reasons:

- no label: reasoning-gym gives no answer (None) and no example of one, so a problem's
  label cannot be checked against itself;
- lenient scorer: the dataset's scorer gives full marks to an altered answer (the label
  with a character added, a number off by one), so a wrong answer would count as right;
- label in the prompt: the answers are written in (nearly) every prompt (words the
  instructions spell out, "True", "False", "on", "off", or a name from the text the
  question is about), so a prompt that leaks its label cannot be told from one that does not;
- not reproducible: two calls with one seed give other problems;
- composite: a mix of other datasets (build each as ``rg:<dataset>``).

Served by a label-free scorer: a dataset that gives no answer but an example of a correct
one in its metadata (``LABEL_FIELDS``: ``graph_color``'s colouring) takes that example as
its label; its own scorer still judges any answer (another valid colouring is right too).
``propositional_logic`` and ``rubiks_cube``, the other datasets whose scorers judge answers
without a label (with an example of one in their metadata), fail the kit all the same:
their scorers give full marks to an altered answer.
Entries with a blank answer (a few of ``ab`` and ``base_conversion``) are left out of the
problems: an empty label cannot be told from no answer.
"""

from __future__ import annotations

# the metadata field holding an example of a correct answer, for datasets whose answer is None
LABEL_FIELDS = {"graph_color": "possible_answer"}

_NO_LABEL = ("reasoning-gym gives no answer and no example of one (its scorer plays the "
             "answer out), so a label cannot be checked against itself")
_LEAK = ("its answers ({}) are written in (nearly) every prompt, so a prompt that leaks its "
         "label cannot be told from one that does not")
_LENIENT = ("its scorer gives full marks to an altered answer ({}), so wrong answers would "
            "count as right")
_NOT_REPRODUCIBLE = ("two calls with one seed give other problems (reasoning-gym draws them "
                     "from an unseeded source), so its splits cannot be reproduced")

REFUSED = {
    "acre": _LEAK.format("'on', 'off', 'undetermined'"),
    "advanced_geometry": _LENIENT.format("'27.35°1' for '27.35°'"),
    "boxnet": _NO_LABEL,
    "circuit_logic": _LEAK.format("'0', '1'"),
    "codeio": _NOT_REPRODUCIBLE,
    "color_cube_rotation": _LEAK.format("colour names: 'gold', 'pink'"),
    "composite": ("a mix of other datasets, each with its own scorer; build each of them as "
                  "rg:<dataset>"),
    "course_schedule": _LEAK.format("'True', 'False'"),
    "fraction_simplification": _LENIENT.format("'$\\frac{410}{547}$1' for "
                                               "'$\\frac{410}{547}$'"),
    "game_of_life_halting": _LENIENT.format("'False1' for 'False'"),
    "intermediate_integration": _LENIENT.format("'... + C1' for '... + C'"),
    "isomorphic_strings": _LEAK.format("'True', 'False'"),
    "kakurasu": _LENIENT.format("a grid with '12' for its last '1'"),
    "knights_knaves": _LENIENT.format("'... David is a knight.1'"),
    "list_functions": _NOT_REPRODUCIBLE,
    "mahjong_puzzle": _LEAK.format("'Peng', 'Chi', 'Pass'"),
    "needle_haystack": _LEAK.format("a name from the text: 'Craig-James'"),
    "pool_matrix": _LENIENT.format("'5.01' for '5.0'"),
    "propositional_logic": ("reasoning-gym gives no answer, and the scorer that judges the "
                            "logic of any conclusion gives full marks to an altered one "
                            "('¬P1' where '¬P' follows), so wrong answers would count as "
                            "right"),
    "power_function": _LENIENT.format("'331846407492' for '331846407491.0611'"),
    "quantum_lock": _LENIENT.format("'C → B → C → C → C → C → C1' for 'C → B → C → C → C → C → C'"),
    "ransom_note": _LEAK.format("'True', 'False'"),
    "rubiks_cube": ("reasoning-gym gives no answer, and the scorer that plays any move "
                    "sequence out gives full marks to an altered one ('... D U1' for "
                    "'... D U'), so wrong answers would count as right"),
    "rush_hour": _NO_LABEL,
    "self_reference": _LEAK.format("small counts: '2', '4'"),
    "shortest_path": _LEAK.format("'infeasible', 'left', 'up'"),
    "simple_integration": _LENIENT.format("'-13*x/5 + C1' for '-13*x/5 + C'"),
    "sokoban": _LENIENT.format("'UDLL1' for 'UDLL'"),
    "spell_backward": _LENIENT.format("'iksvakahC1' for 'iksvakahC'"),
    "string_insertion": _LEAK.format("the rewritten string"),
    "syllogism": _LEAK.format("'Yes', 'No'"),
    "time_intervals": _LENIENT.format("'69 days1' for '69 days'"),
    "zebra_puzzles": _LEAK.format("a name from the puzzle: 'bob'"),
}


def refusal(dataset: str) -> str | None:
    """Why ``rg:<dataset>`` is refused, or None when it is served."""
    why = REFUSED.get(dataset)
    return f"task 'rg:{dataset}' is refused: {why}" if why else None
