"""Questioner: every edit's probes, before any prompt is written.

Keeps what the dataset gives (rephrases, portability, locality) and fills what is missing.
Rules use *relation templates*: an edit's prompt with its subject cut out is a way to ask that
relation, so another edit with the same relation gets a rephrase from it, and a subject gets a
locality probe for a relation it is not edited on. An edit whose relation is a Wikidata id
(``P17``, ...) also gets the written ways to ask that relation and neutral wrappers of its own
prompt (``prompts.relations``): a real batch gives each fact once. ``general_locality`` adds
general-knowledge questions as anchors. Locality answers are the pre-edit model's own greedy
answers (no context): that is what "unchanged" means.
"""

from __future__ import annotations

import re

from langgraph.config import get_stream_writer
from langgraph.runtime import Runtime

from skedit.agents.config import AgentsConfig
from skedit.agents.context import AgentsContext
from skedit.agents.state import BatchState, dump, edits_of
from skedit.prompts import relations as wikidata
from skedit.prompts.answers import first_answer, matches, normalise
from skedit.prompts.render import context_prefix, fact_statement
from skedit.prompts.schema import Edit, Probe


def template_of(text: str, subject: str) -> str | None:
    """``text`` with its subject replaced by ``{}`` (None when the subject is absent)."""
    m = re.search(re.escape(subject), text, flags=re.IGNORECASE)
    if not m:
        return None
    return text[: m.start()] + "{}" + text[m.end() :]


def relation_templates(edits: list[Edit]) -> dict[str, list[str]]:
    """Per relation, the distinct ways the batch asks it, in order of appearance."""
    out: dict[str, list[str]] = {}
    for e in edits:
        if not e.relation:
            continue
        for text in [e.prompt, *e.rephrases]:
            t = template_of(text, e.subject)
            if t and t not in out.setdefault(e.relation, []):
                out[e.relation].append(t)
    return out


def portability_templates(edits: list[Edit]) -> dict[str, list[tuple[str, str | None]]]:
    """Per relation, the distinct multi-hop questions of the batch (template, subkind)."""
    out: dict[str, list[tuple[str, str | None]]] = {}
    for e in edits:
        if not e.relation:
            continue
        for p in e.portability:
            t = template_of(p.prompt, e.subject)
            if t and all(t != x for x, _ in out.setdefault(e.relation, [])):
                out[e.relation].append((t, p.subkind))
    return out


def _more_portability(e: Edit, templates: dict, n: int) -> list[Probe]:
    """Up to ``n`` multi-hop questions through ``e`` of kinds it does not have yet.

    They carry no answer: the teacher answers them with the prompt in context, so the
    transfer set teaches more of what follows from the new fact; the evaluation skips them.
    """
    have = {p.subkind for p in e.portability if p.subkind} | {
        template_of(p.prompt, e.subject) for p in e.portability
    }
    out: list[Probe] = []
    for t, subkind in templates.get(e.relation or "", []):
        if len(out) >= n:
            break
        if t in have or (subkind and subkind in have):
            continue
        have |= {t, subkind} - {None}
        out.append(
            Probe(
                prompt=t.replace("{}", e.subject),
                answers=[],
                kind="portability",
                edit_id=e.id,
                subkind=subkind,
            )
        )
    return out


def generated_probes(edits: list[Edit], config: AgentsConfig) -> dict[str, Edit]:
    """Edits with missing rephrases and locality probes filled by the rules, and more
    multi-hop questions (without answers) for the transfer set."""
    templates = relation_templates(edits)
    hops = portability_templates(edits) if config.generated_portability > 0 else {}
    edited = {(e.subject.lower(), e.relation) for e in edits if e.relation}
    asked = edited_questions(edits)
    known = {e.subject.lower() for e in edits if e.kind != "insert"}  # the model knows them
    general = general_probes(edits, config.general_locality) if edits else {}
    out: dict[str, Edit] = {}
    for i, e in enumerate(edits):
        update: dict = {}
        if not e.rephrases and e.relation and wikidata.templates(e.relation):
            update["rephrases"] = wikidata.templates_for(
                e.relation, e.prompt, e.subject, n=config.generated_rephrases
            )
        elif not e.rephrases and e.relation:
            own = template_of(e.prompt, e.subject)
            alts = [t for t in templates.get(e.relation, []) if t != own]
            update["rephrases"] = [t.replace("{}", e.subject) for t in alts][
                : config.generated_rephrases
            ]
        if not e.locality:
            loc: list[Probe] = []
            # same subject, a relation it is not edited on: must keep its old answer (not for a
            # subject the batch inserts: the model's answers about it are guesses, not knowledge)
            for rel, ts in templates.items() if e.subject.lower() in known else []:
                if len(loc) >= config.same_subject_locality:
                    break
                if rel != e.relation and (e.subject.lower(), rel) not in edited:
                    prompt = ts[0].replace("{}", e.subject)
                    loc.append(_locality(prompt, e.id, "same_subject"))
            others = [o for o in edits[i + 1 :] + edits[:i] if o.subject.lower() in known]
            loc += _other_subject_locality(e, others, edited, asked, config)
            loc += _well_known_locality(e, edits, asked, config.relation_locality)
            if e.subject.lower() in known:
                loc += near_miss_locality(e, edits, asked, config.near_miss_locality)
            update["locality"] = loc
        if not e.locality and general.get(e.id):
            update["locality"] = [*update.get("locality", []), *general[e.id]]
        more = _more_portability(e, hops, config.generated_portability) if e.relation else []
        if more:
            update["portability"] = [*e.portability, *more]
        out[e.id] = e.model_copy(update=update) if update else e
    return out


def edited_questions(edits: list[Edit]) -> set[str]:
    """Every question the batch edits (prompts and rephrases), normalised."""
    return {normalise(q) for e in edits for q in [e.prompt, *e.rephrases]}


def _other_subject_locality(
    e: Edit,
    others: list[Edit],
    edited: set[tuple[str, str]],
    asked: set[str],
    config: AgentsConfig,
) -> list[Probe]:
    """``e``'s own question asked about the batch's other subjects (CounterFact's neighbourhood
    prompts: same relation, another subject), whose answers must not change.

    Never a question the batch edits: a subject edited on ``e``'s relation is skipped. Without
    relation labels a question's relation is unknown ("The birthplace of X is" and "Where was
    X born?" ask the same), so the questioner also asks the teacher (see
    :func:`asks_edited_fact`).
    """
    own = template_of(e.prompt, e.subject)
    # a Wikidata relation is also asked in its first written form (a second wording of the same
    # question: an edit must not move every subject's answer, however it is asked)
    written = wikidata.CLOZE.get(e.relation or "", [])[:1]
    out: list[Probe] = []
    seen = {e.subject.lower()}
    n_subjects = 0
    for o in others:
        if own is None or n_subjects >= config.other_subject_locality:
            break
        s = o.subject.lower()
        if s in seen:
            continue
        seen.add(s)
        if e.relation and (s, e.relation) in edited:
            continue
        forms = [own, *(t for t in written if t != own)]
        prompts = [t.replace("{}", o.subject) for t in forms]
        prompts = [p for p in prompts if normalise(p) not in asked]
        n_subjects += bool(prompts)
        out += [_locality(p, e.id, "other_subject") for p in prompts]
    return out


def _well_known_locality(e: Edit, edits: list[Edit], asked: set[str], n: int) -> list[Probe]:
    """``e``'s own question about the well-known subjects of its Wikidata relation (none of the
    batch's subjects): candidates, of which :func:`keep_well_known` keeps ``n`` once the base
    model's answers are known. The ones an over-general edit moves first are those that share
    its old object, and a real batch names too few subjects to anchor them."""
    own = template_of(e.prompt, e.subject)
    if own is None or n <= 0:
        return []
    batch = {x.subject.lower() for x in edits}
    out: list[Probe] = []
    for s in wikidata.WELL_KNOWN.get(e.relation or "", []):
        prompt = own.replace("{}", s)
        if s.lower() in batch or normalise(prompt) in asked:
            continue
        out.append(_locality(prompt, e.id, "well_known"))
    return out


_FUNCTION_WORDS = {"of", "the", "and", "de", "la", "le", "von", "van", "der", "du", "in", "on"}


def near_miss_subjects(e: Edit, edits: list[Edit], limit: int) -> list[str]:
    """Up to ``limit`` names that look like ``e``'s subject and are none of the batch's: a word
    of the subject (all but the last, in a name of three or more) swapped for words of other
    subjects, first of the batch's edits that share ``e``'s relation and old object, then of
    the rest of the batch, then of the relation's well-known subjects. ``Howard Glacier`` gives ``Johnson Glacier``; ``Farouk of Egypt``
    gives ``Hyder of Egypt``. No name contains the subject or another edited subject."""
    words = e.subject.split()
    slots = [i for i, w in enumerate(words) if len(w) > 1 and w.lower() not in _FUNCTION_WORDS]
    if not slots or limit <= 0:
        return []
    i = next((k for k, x in enumerate(edits) if x is e), 0)
    others = edits[i + 1 :] + edits[:i]  # each edit starts at its own place
    same_old = [x for x in others if x.relation == e.relation and x.target_old == e.target_old]
    same_rel = [x for x in others if x.relation == e.relation and x not in same_old]
    rest = [x for x in others if x.relation != e.relation]
    donor_names = [x.subject for x in same_old + same_rel + rest]
    donor_names += wikidata.WELL_KNOWN.get(e.relation or "", [])
    own = {w.lower() for w in words}
    donors: list[str] = []
    for name in donor_names:
        for w in name.split():
            ok = len(w) > 1 and w[0].isupper() and w.lower() not in own | _FUNCTION_WORDS
            if ok and w not in donors:
                donors.append(w)
    batch = [x.subject.lower() for x in edits]
    # a name of one or two words gets one word swapped (either: "Ahmad Farouk" and "Hyder
    # Khomeini" both look like "Ruhollah Khomeini"); a longer one keeps only its last word (the
    # head noun of "Second Polish Republic": with one word swapped the model cannot tell the
    # look-alike from the subject, and its anchor would fight the edit)
    swaps = [[k] for k in slots] if len(slots) <= 2 else [slots[:-1]]
    out: list[str] = []
    seen: set[str] = set()
    for j in range(len(donors)):
        for swap in swaps:
            fill = {k: donors[(j + n) % len(donors)] for n, k in enumerate(swap)}
            name = " ".join(fill.get(k, w) for k, w in enumerate(words))
            low = name.lower()
            if low not in seen and not any(b in low or low in b for b in batch):
                seen.add(low)
                out.append(name)
            if len(out) >= limit:
                return out
    return out


def own_forms(e: Edit) -> list[str]:
    """``e``'s own question with its subject cut out, and its relation's first written form
    (none when the prompt does not name the subject): how an anchor about another name asks."""
    own = template_of(e.prompt, e.subject)
    if own is None:
        return []
    return [own, *(t for t in wikidata.CLOZE.get(e.relation or "", [])[:1] if t != own)]


def near_miss_locality(e: Edit, edits: list[Edit], asked: set[str], n: int) -> list[Probe]:
    """``e``'s own question (and its relation's first written form) about names that look like
    its subject (:func:`near_miss_subjects`): candidates, of which :func:`keep_well_known`
    keeps ``n`` per edit once the base model's answers are known. A small model ties an edit
    to the look of a name: moving five Muslim scholars to Judaism moves every Arabic name, and
    two glaciers every glacier. Anchoring the base model's answers for look-alike names keeps
    the edit on its subject."""
    forms = own_forms(e)
    if not forms or n <= 0:
        return []
    out: list[Probe] = []
    for name in near_miss_subjects(e, edits, 3 * n):
        for t in forms:
            prompt = t.replace("{}", name)
            if normalise(prompt) not in asked:
                out.append(_locality(prompt, e.id, "near_miss"))
    return out


_BRACKETS = re.compile(r"\([^)]*\)?|\[[^\]]*\]?")


def associate_names(generation: str, edits: list[Edit], limit: int) -> list[str]:
    """Names in the base model's continuation of :data:`wikidata.ASSOCIATES` for a
    subject (its first line, ``;``-separated, brackets dropped), up to ``limit``: short
    capitalised names that neither contain nor are contained in a subject of the batch, so
    none of them asks a fact the batch edits."""
    batch = [x.subject.lower() for x in edits]
    out: list[str] = []
    for item in _BRACKETS.sub("", generation.strip().split("\n", 1)[0]).split(";"):
        name = item.strip(" .,:'\"")
        low = name.lower()
        ok = 1 < len(name) <= 60 and len(name.split()) <= 6 and name[0].isupper()
        ok = ok and low not in (x.lower() for x in out)
        if ok and not any(b in low or low in b for b in batch):
            out.append(name)
        if len(out) >= limit:
            break
    return out


def associate_locality(
    edits: list[Edit], ctx: AgentsContext, asked: set[str], n: int
) -> dict[str, list[Probe]]:
    """Per edit, its own question (and its relation's first written form) about the names the
    base model lists beside its subject (:func:`associate_names`): candidates, of which
    :func:`keep_well_known` keeps ``n`` once the base model's answers are known. Look-alike
    names (:func:`near_miss_locality`) anchor what a subject looks like; these anchor what the
    model holds close to it (Gemma-3-270M lists Picasso, Matisse and Chagall beside Georges
    Pompidou, Sikkim and Tibet beside Manipur), which an edit drags along when they share its
    old object, though no list of well-known subjects names them."""
    from skedit.sft.modelops import generate

    todo = [e for e in edits if own_forms(e)]
    if n <= 0 or not todo:
        return {}
    model, tok = ctx.teacher()
    with ctx.lock:
        gens = generate(
            model,
            tok,
            [wikidata.ASSOCIATES.replace("{}", e.subject) for e in todo],
            max_new_tokens=40,  # room for about five names
            batch_size=ctx.config.batch_size,
            repetition_penalty=1.3,
        )
    out: dict[str, list[Probe]] = {}
    for e, g in zip(todo, gens, strict=True):
        for name in associate_names(g, edits, 3 * n):
            for t in own_forms(e):
                prompt = t.replace("{}", name)
                if normalise(prompt) not in asked:
                    out.setdefault(e.id, []).append(_locality(prompt, e.id, "associate"))
    return out


def keep_well_known(
    probes: list[Probe], edits: list[Edit], n: int, subkind: str = "well_known"
) -> set[str]:
    """Ids of the candidates of ``subkind`` (well-known subjects of the edit's relation, or
    look-alike names: ``near_miss``) to leave out: per edit, ``n`` are kept, first
    those the base model answers with the edit's old object (``expected`` must be recorded),
    since an edit spreads to the subjects that share its old answer, then the others in order.
    Edits of one relation share the pool: each takes the subjects the earlier ones used least,
    so a batch that moves many subjects off one answer anchors as many subjects as the pool
    holds, not the same ``n`` again. A candidate the base model gives no answer to is never
    kept."""
    by_id = {e.id: e for e in edits}
    by_edit: dict[str, list[Probe]] = {}
    for p in probes:
        if p.kind == "locality" and p.subkind == subkind:
            by_edit.setdefault(p.edit_id or "", []).append(p)
    used: dict[tuple[str, str], int] = {}  # (relation, subject) -> edits that kept it

    def anchor(p: Probe, e: Edit | None) -> tuple[str, str]:
        own = template_of(e.prompt, e.subject) if e else None
        if own is None:
            return ("", p.prompt)
        head, tail = own.split("{}", 1)
        if not (p.prompt.startswith(head) and p.prompt.endswith(tail)):
            return (e.relation or "", p.prompt)  # another written form of the question
        return (e.relation or "", p.prompt[len(head) : len(p.prompt) - len(tail)])

    drop: set[str] = set()
    for eid, cands in by_edit.items():
        e = by_id.get(eid)
        target = e.target_old if e else None
        answered = [p for p in cands if (p.expected or "").strip()]
        shared = [p for p in answered if target and matches(p.expected or "", [target])]
        rest = [p for p in answered if p not in shared]
        ranked = sorted(shared, key=lambda p: used.get(anchor(p, e), 0))
        ranked += sorted(rest, key=lambda p: used.get(anchor(p, e), 0))
        kept = ranked[:n]
        for p in kept:
            used[anchor(p, e)] = used.get(anchor(p, e), 0) + 1
        keep = {p.id for p in kept}
        drop |= {p.id for p in cands if p.id not in keep}
    return drop


def general_probes(edits: list[Edit], n: int) -> dict[str, list[Probe]]:
    """``n`` general-knowledge locality probes (``prompts.relations.GENERAL``), spread over the
    edits (one probe belongs to one edit), leaving out any that names a subject of the batch."""
    subjects = [e.subject.lower() for e in edits]
    pool = [g for g in wikidata.GENERAL if not any(s in g.lower() for s in subjects)][:n]
    out: dict[str, list[Probe]] = {}
    for i, prompt in enumerate(pool):
        e = edits[i % len(edits)]
        out.setdefault(e.id, []).append(_locality(prompt, e.id, "general"))
    return out


def _locality(prompt: str, edit_id: str, subkind: str) -> Probe:
    return Probe(prompt=prompt, answers=[], kind="locality", edit_id=edit_id, subkind=subkind)


def record_expected(probes: list[Probe], ctx: AgentsContext) -> list[Probe]:
    """Set ``expected`` of every locality probe to the pre-edit model's greedy answer.

    Always recomputed: a value carried in the data came from some other model.
    """
    from skedit.sft.modelops import generate

    todo = [p for p in probes if p.kind == "locality"]
    if todo:
        model, tok = ctx.teacher()
        with ctx.lock:
            gens = generate(
                model,
                tok,
                [p.prompt for p in todo],
                max_new_tokens=ctx.config.probe_max_new_tokens,
                batch_size=ctx.config.batch_size,
            )
        for p, g in zip(todo, gens, strict=True):
            p.expected = first_answer(g)
    return probes


def questioner(state: BatchState, runtime: Runtime[AgentsContext]) -> BatchState:
    ctx = runtime.context
    edits = edits_of(state)
    filled = generated_probes(edits, ctx.config)
    backend = ctx.backend
    # a backend of one's own that predates these settings behaves like the rules'
    asks_all = getattr(backend, "asks_all", False)
    replaces = getattr(backend, "replaces_rule_rephrases", False)
    given_rephrases = {e.id for e in edits if e.rephrases}
    ask = [
        e for e in filled.values() if e.id not in given_rephrases and (asks_all or not e.rephrases)
    ]
    for eid, q in backend.questions(ask, n_rephrases=ctx.config.generated_rephrases).items():
        e = filled[eid]
        rephrases = e.rephrases
        if q.rephrases and (replaces or not rephrases):
            rephrases = q.rephrases
        given = [p for p in e.portability if p.answers]  # the dataset's own win
        port = list(e.portability)
        if not given:
            port += [
                Probe(prompt=p["prompt"], answers=[p["answer"]], kind="portability", edit_id=eid)
                for p in q.portability
            ]
        filled[eid] = e.model_copy(update={"rephrases": rephrases, "portability": port})
    given = {e.id: bool(e.locality) for e in edits}
    edits = [filled[e.id] for e in edits]
    # the subject's associates, for edits whose locality is generated about a subject the model
    # knows (an insert's subject has none the model holds)
    mine = [e for e in edits if not given[e.id] and e.kind != "insert"]
    # a locality probe that is another edit's question would be trained and scored twice, with
    # the old answer and with the new one (anchors do not change the questions the batch asks)
    asked = edited_questions(edits)
    more = associate_locality(mine, ctx, asked, ctx.config.associate_locality)
    edits = [
        e.model_copy(update={"locality": [*e.locality, *more[e.id]]}) if e.id in more else e
        for e in edits
    ]
    probes = [p for e in edits for p in e.probes()]
    notes: list[str] = []
    clash = {p.id for p in probes if p.kind == "locality" and normalise(p.prompt) in asked}
    if clash:
        notes.append(
            f"{len(clash)} locality probe(s) ask a question another edit of the batch changes; "
            "left out (they cannot keep their old answer)"
        )
    probes = record_expected([p for p in probes if p.id not in clash], ctx)
    relation = {e.id: e.relation for e in edits}
    unlabelled = [
        p
        for p in probes
        if p.kind == "locality" and not given.get(p.edit_id, True) and not relation.get(p.edit_id)
    ]
    changed = asks_edited_fact(unlabelled, edits, ctx)
    if changed:
        notes.append(
            f"{len(changed)} generated locality probe(s) ask a fact the batch edits (the teacher "
            "reading that subject's new facts gives its new target); left out. A `relation` "
            "column avoids generating them"
        )
    drop = clash | changed | keep_well_known(probes, edits, ctx.config.relation_locality)
    drop |= keep_well_known(probes, edits, ctx.config.near_miss_locality, "near_miss")
    drop |= keep_well_known(probes, edits, ctx.config.associate_locality, "associate")
    probes = [p for p in probes if p.id not in drop]
    edits = [
        e.model_copy(update={"locality": [p for p in e.locality if p.id not in drop]})
        if any(p.id in drop for p in e.locality)
        else e
        for e in edits
    ]
    bare = sum(1 for e in edits if not e.locality)
    if bare:
        notes.append(
            f"{bare} of {len(edits)} edit(s) have no unrelated probe (their locality is not "
            "measured, and the student gets no anchors from them): probes are generated only "
            "about subjects the model knows (an edit without target_old is an insert) and "
            "questions the batch does not edit; give target_old or kind, a relation column, or "
            "locality probes in JSONL"
        )
    get_stream_writer()({"event": "questioner", "probes": len(probes), "notes": notes})
    return {"edits": [dump(e) for e in edits], "probes": [dump(p) for p in probes]}


def asks_edited_fact(probes: list[Probe], edits: list[Edit], ctx: AgentsContext) -> set[str]:
    """Ids of locality ``probes`` that ask a fact the batch edits, found with the teacher: read
    the new facts of a subject the probe names, it changes its pre-edit answer to one of that
    subject's new targets. For probes generated without relation labels, whose relation is
    unknown; ``expected`` must be recorded already."""
    from skedit.sft.modelops import generate

    by_subject: dict[str, list[Edit]] = {}
    for e in edits:
        by_subject.setdefault(e.subject.lower(), []).append(e)
    items: list[tuple[Probe, str, list[str]]] = []  # (probe, context, new targets)
    for p in probes:
        for s, es in by_subject.items():
            if re.search(rf"(?<!\w){re.escape(s)}(?!\w)", p.prompt, flags=re.IGNORECASE):
                text = " ".join(fact_statement(x.prompt, x.target_new) for x in es)
                items.append((p, context_prefix(text), [x.target_new for x in es]))
    if not items:
        return set()
    model, tok = ctx.teacher()
    with ctx.lock:
        gens = generate(
            model,
            tok,
            [p.prompt for p, _, _ in items],
            prefixes=[c for _, c, _ in items],
            max_new_tokens=ctx.config.probe_max_new_tokens,
            batch_size=ctx.config.batch_size,
        )
    return {
        p.id
        for (p, _, targets), g in zip(items, gens, strict=True)
        if matches(g, targets) and not (p.expected and matches(g, [p.expected]))
    }
