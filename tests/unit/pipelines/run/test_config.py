import pytest

from skedit.pipelines.run.config import dump_config, load_config
from skedit.prompts.errors import SkeditError


def test_unknown_keys_and_wrong_types_name_the_key(tmp_path):
    bad = tmp_path / "c.yaml"
    bad.write_text("training:\n  learnig_rate: 0.1\n")
    with pytest.raises(SkeditError, match=r"training\.learnig_rate") as e:
        load_config(bad)
    assert str(bad) in e.value.render() and "learning_rate" in e.value.render()
    bad.write_text("evaluation:\n  sequential: lots\n")
    with pytest.raises(SkeditError, match=r"evaluation\.sequential"):
        load_config(bad)
    bad.write_text("modle: x\n")
    with pytest.raises(SkeditError, match="unknown key 'modle'"):
        load_config(bad)
    bad.write_text("training: [1, 2\n")
    with pytest.raises(SkeditError, match="not valid YAML"):
        load_config(bad)


def test_resolved_config_round_trips(tmp_path):
    src = tmp_path / "c.yaml"
    src.write_text("model: /m\nseed: 3\nevaluation:\n  baselines: [base]\n")
    cfg = load_config(src)
    out = tmp_path / "resolved.yaml"
    out.write_text(dump_config(cfg))
    again = load_config(out)
    assert again.to_dict() == cfg.to_dict()
    assert again.seed == 3 and again.section("evaluation").baselines == ["base"]
    assert "learning_rate" in out.read_text()  # every default is written out
