"""Checks the hostile-input tests share (not a test module)."""


def one_line_exit_2(result, *words) -> None:
    """A refusal as the user sees it: exit 2, no traceback, one `edgeship: error:` line naming WORDS (warnings and
    TensorFlow's start-up chatter aside)."""
    assert result.returncode == 2, (result.returncode, result.stdout[-800:], result.stderr[-800:])
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("edgeship: error:")]
    assert len(errors) == 1, result.stderr
    for word in words:
        assert word in errors[0], result.stderr
