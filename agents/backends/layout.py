"""How facts are laid out as text: canonical statements and relation tables."""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection

from skedit.prompts.relations import is_property_id
from skedit.prompts.render import compact_statement, fact_statement, relation_tables
from skedit.prompts.schema import Edit


def written_relation(edit: Edit) -> str | None:
    """The edit's relation as a word a teacher can read (``birthplace``), else ``None``.

    A Wikidata property id (``P140``) names the relation for templates but means nothing in a
    teacher's context ("Hyder Ali P140 Judaism."): such an edit is stated as a full sentence.
    """
    rel = (edit.relation or "").strip()
    return rel if rel and not is_property_id(rel) else None


def statement(edit: Edit, *, sentence: bool = False) -> str:
    """The canonical statement of an edit: compact when it names a relation, else a sentence."""
    if written_relation(edit) and not sentence:
        return compact_statement(edit.subject, edit.relation, edit.target_new)
    return fact_statement(edit.prompt, edit.target_new)


def layout_text(
    edits: list[Edit],
    *,
    sentence_form: Collection[str] = (),
    statement_form: Collection[str] = (),
    layout: str = "tables",
) -> str:
    """The rules writer's text for ``edits``, in their order.

    ``layout="tables"``: edits that name a relation are laid out relation by relation (one
    ``relation: s1 t1 s2 t2.`` table per relation, at the place of its first edit); the rest,
    and edits in ``statement_form`` or ``sentence_form``, as :func:`statement` (compact, or a
    full sentence for ``sentence_form``). ``"statements"``: one statement each.
    """
    segments: dict[tuple[str, str], list[Edit]] = {}
    for e in edits:
        own_statement = e.id in sentence_form or e.id in statement_form
        if layout == "tables" and written_relation(e) and not own_statement:
            key = ("table", written_relation(e))
        else:
            key = ("fact", e.id)
        segments.setdefault(key, []).append(e)
    out: list[str] = []
    for (kind, _), es in segments.items():
        if kind == "table":
            out += relation_tables([(e.subject, e.relation or "", e.target_new) for e in es])
        else:
            out += [statement(e, sentence=e.id in sentence_form) for e in es]
    return " ".join(out)


def table_rows(
    edits: list[Edit], *, layout: str = "tables", out_of_table: Collection[str] = ()
) -> set[str]:
    """Ids of the ``edits`` that :func:`layout_text` writes as rows of a relation table: with
    the tables layout, those whose relation has another edit in the table (a relation's only
    fact is a compact statement). ``out_of_table``: ids stated on their own whatever they are."""
    if layout != "tables":
        return set()
    tabled = [e for e in edits if written_relation(e) and e.id not in out_of_table]
    per_relation = Counter((e.relation or "").strip() for e in tabled)
    return {e.id for e in tabled if per_relation[(e.relation or "").strip()] > 1}
