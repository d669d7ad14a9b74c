from skedit.sft.train import last_checkpoint


def test_a_checkpoint_cut_short_by_a_kill_is_not_resumed_from(tmp_path):
    ck = tmp_path / "checkpoints"
    for step, complete in [(4, True), (8, True), (12, False)]:
        d = ck / f"checkpoint-{step}"
        d.mkdir(parents=True)
        if complete:
            (d / "trainer_state.json").write_text("{}")
    assert last_checkpoint(tmp_path) == str(ck / "checkpoint-8")
    assert last_checkpoint(tmp_path / "nothing") is None
