"""The web prompt layout and the web retrieval state, on their own (the pages themselves: test_miniwob.py,
test_webarena_local.py)."""

from __future__ import annotations

from jitrl_bench.envs.web.prompt import fit_lines, normalize_url

SITES = {"gitlab": "http://127.0.0.1:8023", "shopping_admin": "http://10.0.0.5:7780/admin"}


def test_urls_are_compared_as_the_reference_code_compares_them() -> None:
    assert normalize_url("http://127.0.0.1:8023/byteblaze/a11y-syntax-highlighting/-/issues/42", SITES) == (
        "gitlab/byteblaze/a11y-syntax-highlighting/-/issues/ID"
    )
    # the query, the fragment and everything after /filter/ go; tokens and base64 become HASH
    assert normalize_url("http://10.0.0.5:7780/admin/sales/order/view/order_id/12/?a=1#top", SITES) == (
        "shopping_admin/admin/sales/order/view/order_id/ID"
    )
    url = "http://10.0.0.5:7780/admin/reports/report_sales/sales/filter/cmVwb3J0X3BlcmlvZD1kYXk=/form_key/PPOtHm54S8"
    assert normalize_url(url, SITES) == "shopping_admin/admin/reports/report_sales/sales"
    assert normalize_url("http://127.0.0.1:8023/-/profile/personal_access_tokens/Xk29sLpQ7zTt2Q", SITES) == (
        "gitlab/-/profile/personal_access_tokens/HASH"
    )
    assert normalize_url("http://elsewhere:9000/wiki/Main_Page") == "elsewhere:9000/wiki/Main_Page"
    assert normalize_url("file:///opt/miniwob/html/miniwob/click-button.html") == "file/click-button.html"


def test_fit_lines_keeps_actionable_lines_first_in_page_order() -> None:
    lines = [f"line {i}" for i in range(10)]
    tokens = [5] * 10
    kept = fit_lines(lines, tokens, budget=6 * 4, first={2, 7})  # room for 4 lines of 5 tokens (+1 newline)
    assert kept == ["line 1", "line 2", "line 3", "line 7"]  # 2 and 7, then the neighbours of 2 (1, 3) by page order
    assert fit_lines(lines, tokens, budget=1000, first=set()) == lines
    assert fit_lines(lines, tokens, budget=12, first={9}) == ["line 8", "line 9"]
    assert fit_lines(lines, [50, *tokens[1:]], budget=12, first={0, 1}) == ["line 1", "line 2"]  # too long: skipped
