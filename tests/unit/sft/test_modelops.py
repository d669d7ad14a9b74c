from skedit.sft.modelops import encode_input, encode_target, generate, load_model, score_targets


def test_context_prefix_leaves_probe_and_target_tokens_unchanged(tiny_lm_dir):
    model, tok = load_model(tiny_lm_dir)
    plain = encode_input(tok, "alice lives in")
    ctx = encode_input(tok, "alice lives in", prefix="Context: alice lives in rome .\n")
    assert ctx[-len(plain) + 1 :] == plain[1:]  # same probe ids after the context
    assert len(ctx) > len(plain)
    assert (
        encode_target(tok, "alice lives in", "rome")
        == tok(" rome", add_special_tokens=False)["input_ids"]
    )


def test_batched_generation_and_scoring_match_one_at_a_time(tiny_lm_dir):
    model, tok = load_model(tiny_lm_dir)
    prompts = ["alice lives in", "where was bob born ?", "the capital of france is"]
    prefixes = ["Context: alice lives in rome .\n", None, "Context: the a is of in was .\n"]
    batched = generate(model, tok, prompts, prefixes=prefixes, max_new_tokens=3, batch_size=8)
    single = [
        generate(model, tok, [p], prefixes=[c], max_new_tokens=3)[0]
        for p, c in zip(prompts, prefixes, strict=True)
    ]
    assert batched == single
    s_batched = score_targets(model, tok, prompts, ["rome", "paris", "paris"], prefixes=prefixes)
    s_single = [
        score_targets(model, tok, [p], [t], prefixes=[c])[0]
        for p, t, c in zip(prompts, ["rome", "paris", "paris"], prefixes, strict=True)
    ]
    for a, b in zip(s_batched, s_single, strict=True):
        assert a.predicted == b.predicted
        assert abs(a.logprob - b.logprob) < 1e-4
