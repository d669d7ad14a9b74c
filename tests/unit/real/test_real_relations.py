"""Generated ways to ask a real relation: the subject filled in, the rewrite never repeated."""

from skedit.prompts.relations import templates_for


def test_known_relation_gets_its_own_phrasings_with_the_subject():
    out = templates_for("P30", "Vinson Massif is located in the continent of", "Vinson Massif", n=4)
    assert len(out) >= 4
    assert all("Vinson Massif" in p and "{}" not in p for p in out)
    assert "Vinson Massif is located in the continent of" not in out  # the rewrite itself
    assert len(set(out)) == len(out)


def test_unknown_relation_falls_back_to_wrappers_of_the_rewrite():
    out = templates_for("P99999", "Acme {Corp} is run by", "Acme {Corp}")
    assert out and all(
        p.endswith("Acme {Corp} is run by") or "Acme {Corp} is run by?" in p for p in out
    )
