/* Tests for the Jinja interpreter (src/engine/jinja*.c): syntax, whitespace
 * control with Hugging Face's settings, Python value semantics, filters,
 * tests and methods, errors with positions, and limits against hostile
 * templates. Expected strings were checked against Python's Jinja2 3.1
 * (ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks, loopcontrols). */
#include "base/sb.h"
#include "engine/jinja.h"
#include "testutil.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Renders SRC with VARS (JSON object text or NULL) and OPTS; returns the
 * malloc'd output, or NULL with *ERR set. */
static char *render_opts(const char *src, const char *vars, const jinja_opts *opts, cf_err *err) {
    cf_errclear(err);
    jinja_template *t = jinja_parse(src, strlen(src), err);
    if (!t) return NULL;
    json_t *v = NULL;
    if (vars) {
        json_error_t je;
        v = json_loads(vars, 0, &je);
        assert_non_null(v);
    }
    sb_t out = {0};
    int rc = jinja_render(t, v, opts, &out, err);
    json_decref(v);
    jinja_free(t);
    if (rc) {
        assert_int_not_equal(err->code, 0);
        sb_free(&out);
        return NULL;
    }
    return sb_take(&out);
}

static char *render(const char *src, const char *vars, cf_err *err) {
    return render_opts(src, vars, NULL, err);
}

#define MSGS                                                                                       \
    "{\"messages\": [{\"role\": \"system\", \"content\": \"Be nice.\"}, {\"role\": \"user\", "     \
    "\"content\": \"Hi\"}]}"

/* Asserts that SRC renders to WANT. */
#define assert_renders(src, vars, want)                                                            \
    do {                                                                                           \
        cf_err e_;                                                                                 \
        char *got_ = render(src, vars, &e_);                                                       \
        if (!got_) fail_msg("render failed: %s\n  template: %s", e_.msg, src);                     \
        assert_string_equal(got_, want);                                                           \
        free(got_);                                                                                \
    } while (0)

/* Asserts that SRC fails with a message containing WANT. */
#define assert_fails(src, vars, want)                                                              \
    do {                                                                                           \
        cf_err e_;                                                                                 \
        char *got_ = render(src, vars, &e_);                                                       \
        if (got_) fail_msg("rendered \"%s\" but should fail with \"%s\"", got_, want);             \
        if (!strstr(e_.msg, want)) fail_msg("error \"%s\" does not contain \"%s\"", e_.msg, want); \
    } while (0)

/* ------------------------------------------------------------------ whitespace */

static void dash_markers_strip_whitespace_on_their_side(void **st) {
    (void)st;
    assert_renders("a  {{- 'b' -}}  c", NULL, "abc");
    assert_renders("a\n  {%- if true -%}\n  b  {%- endif -%}  \nc", NULL, "abc");
    assert_renders("x {#- note -#} y", NULL, "xy");
}

static void trim_and_lstrip_blocks_remove_tag_lines(void **st) {
    (void)st;
    /* A block tag alone on its line leaves nothing behind. */
    assert_renders("{% if true %}\n    indented\n    {% if true %}\n        deeper\n    {% endif "
                   "%}\n{% endif %}\nend",
                   NULL, "    indented\n        deeper\nend");
    /* Variable tags are not lstripped; {%+ opts out of lstrip. */
    assert_renders("  {{ 'v' }}\n  {%+ if true %}p{% endif %}", NULL, "  v\n  p");
    /* One trailing newline of the template is dropped, as Jinja does. */
    assert_renders("a\n", NULL, "a");
    assert_renders("a\r\nb", NULL, "a\nb");
}

/* ------------------------------------------------------------------ control flow */

static void for_loop_exposes_loop_variables(void **st) {
    (void)st;
    assert_renders("{% for m in messages %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ "
                   "loop.revindex0 }}"
                   "{{ loop.first }}{{ loop.last }}{{ loop.length }}{{ loop.cycle('a', 'b') }}"
                   "{{ loop.previtem.role if loop.previtem is defined else '-' }};{% endfor %}",
                   MSGS, "1021TrueFalse2a-;2110FalseTrue2bsystem;");
}

static void for_loop_supports_else_filters_and_unpacking(void **st) {
    (void)st;
    assert_renders("{% for k, v in {'a': 1, 'b': 2}.items() %}{{ k }}={{ v }};{% endfor %}", NULL,
                   "a=1;b=2;");
    assert_renders(
        "{% for x in [1, 2, 3, 4, 5] if x is odd %}{{ x }}/{{ loop.length }} {% endfor %}", NULL,
        "1/3 3/3 5/3 ");
    assert_renders("{% for x in [] %}{{ x }}{% else %}empty{% endfor %}", NULL, "empty");
    assert_renders("{% for c in 'hé' %}[{{ c }}]{% endfor %}", NULL, "[h][é]");
    assert_renders("{% for k in {'x': 1, 'y': 2} %}{{ k }}{% endfor %}", NULL, "xy");
}

static void recursive_loops_render_nested_data(void **st) {
    (void)st;
    assert_renders(
        "{%- set tree = [{'n': 'a', 'kids': [{'n': 'b', 'kids': []}, {'n': 'c', 'kids': "
        "[{'n': 'd', 'kids': []}]}]}, {'n': 'e', 'kids': []}] -%}"
        "{%- for node in tree recursive -%}[{{ loop.depth }}{{ loop.depth0 }}{{ node.n }}"
        "{% if node.kids %}{{ loop(node.kids) }}{% endif %}]{%- endfor -%}",
        NULL, "[10a[21b][21c[32d]]][10e]");
    assert_fails("{% for x in [1] %}{{ loop([2]) }}{% endfor %}", NULL, "marked 'recursive'");
}

static void break_and_continue_control_the_loop(void **st) {
    (void)st;
    assert_renders("{% for x in range(10) %}{% if x == 2 %}{% continue %}{% endif %}"
                   "{% if x == 5 %}{% break %}{% endif %}{{ x }}{% endfor %}",
                   NULL, "0134");
}

static void set_in_loop_stays_local_but_namespace_carries_out(void **st) {
    (void)st;
    assert_renders("{% set z = 'outer' %}{% for i in range(3) %}{% set z = i %}{% endfor %}{{ z }}",
                   NULL, "outer");
    assert_renders("{% if true %}{% set w = 1 %}{% endif %}{{ w }}", NULL, "1");
    /* each iteration starts afresh: a set does not carry to the next one */
    assert_renders("{% set z = 'o' %}{% for i in [1, 2, 3] %}[{{ z }}]{% set z = i %}({{ z }}){% "
                   "endfor %}{{ z }}",
                   NULL, "[o](1)[o](2)[o](3)o");
    assert_renders(
        "{% set ns = namespace(a=1, found=false) %}{% for i in range(3) %}{% set ns.a = ns.a + i %}"
        "{% set ns.found = true %}{% endfor %}{{ ns.a }} {{ ns.found }}",
        NULL, "4 True");
    assert_renders("{% set a, b = 1, 2 %}{{ a }}{{ b }}", NULL, "12");
}

static void block_set_captures_rendered_text(void **st) {
    (void)st;
    assert_renders("{% set x %}  block {{ 1 + 1 }} {% endset %}[{{ x }}]{% set y | upper %}hi{% "
                   "endset %}{{ y }}",
                   NULL, "[  block 2 ]HI");
}

static void macros_take_defaults_keywords_and_caller(void **st) {
    (void)st;
    assert_renders(
        "{% macro greet(name, greeting='Hello') %}{{ greeting }}, {{ name }}!{% endmacro %}"
        "{{ greet('Bob') }} {{ greet('Al', greeting='Hi') }} {{ greet(name='X') }}",
        NULL, "Hello, Bob! Hi, Al! Hello, X!");
    assert_renders("{% macro wrap(tag) %}<{{ tag }}>{{ caller() }}</{{ tag }}>{% endmacro %}"
                   "{% call wrap('b') %}inner{% endcall %}",
                   NULL, "<b>inner</b>");
    assert_renders("{% macro row(x) %}[{{ caller(x * 2) }}]{% endmacro %}{% call(v) row(4) %}v={{ "
                   "v }}{% endcall %}",
                   NULL, "[v=8]");
    /* recursion within the limit works */
    assert_renders(
        "{% macro f(n) %}{{ n }}{% if n > 0 %}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(3) }}",
        NULL, "3210");
    assert_fails("{% macro m(a) %}{% endmacro %}{{ m(1, 2) }}", NULL,
                 "takes not more than 1 argument");
    /* a macro that mentions varargs/kwargs takes extra arguments */
    assert_renders("{% macro m(a) %}{{ a }}|{{ varargs }}|{{ kwargs }}{% endmacro %}"
                   "{{ m(1, 2, 3, x=4) }} {{ m(1) }}",
                   NULL, "1|(2, 3)|{'x': 4} 1|()|{}");
}

static void filter_and_generation_blocks_render_their_body(void **st) {
    (void)st;
    assert_renders("{% filter upper %}abc {{ 'def' }}{% endfilter %}", NULL, "ABC DEF");
    assert_renders("{% generation %}gen {{ 1 }}{% endgeneration %}", NULL, "gen 1");
    assert_renders("a{% raw %}{{ not a tag }}{% endraw %}b", NULL, "a{{ not a tag }}b");
    /* lstrip_blocks applies before endraw; the newline after raw %} is kept */
    assert_renders("{% raw %}\nx\n   {% endraw %}\ny", NULL, "\nx\ny");
    assert_fails("{% raw +%}x{% endraw %}", NULL, "unsupported tag 'raw'");
}

/* ------------------------------------------------------------------ values */

static void values_render_with_python_str_and_repr(void **st) {
    (void)st;
    assert_renders("{{ [1, 'a', none, true, 1.5, {'k': [2]}] }}", NULL,
                   "[1, 'a', None, True, 1.5, {'k': [2]}]");
    assert_renders("{{ (1, 2) }}{{ (1,) }}", NULL, "(1, 2)(1,)");
    assert_renders("{{ [\"it's\", 'say \"x\"', 'a\\nb'] }}", NULL,
                   "[\"it's\", 'say \"x\"', 'a\\nb']");
    assert_renders("{{ none }} {{ True }} {{ x }}|", NULL, "None True |");
}

static void numbers_follow_python_arithmetic_and_formatting(void **st) {
    (void)st;
    assert_renders("{{ 10 / 4 }} {{ 10 // 4 }} {{ -7 // 2 }} {{ -7 % 3 }} {{ 2 ** 10 }} {{ 2 ** -1 "
                   "}} {{ 7.0 // 2 }}",
                   NULL, "2.5 2 -4 2 1024 0.5 3.0");
    assert_renders(
        "{{ 1e20 }} {{ 1.0e-5 }} {{ 0.1 + 0.2 }} {{ 3.0 }} {{ 1e16 }} {{ 1e15 }} {{ -0.0 }}", NULL,
        "1e+20 1e-05 0.30000000000000004 3.0 1e+16 1000000000000000.0 -0.0");
    assert_renders("{{ 2 + 3 * 4 }} {{ -2 ** 2 }} {{ 2 ** 3 ** 2 }} {{ 'a' ~ (1 + 2) }} {{ 1 == "
                   "1.0 }} {{ true == 1 }}",
                   NULL, "14 4 64 a3 True True"); /* Jinja's ** is left-associative */
    /* ~ binds tighter than +, as in Jinja: ('a' ~ 1) + 2 is str + int */
    assert_fails("{{ 'a' ~ 1 + 2 }}", NULL, "unsupported operand type(s) for +");
    assert_fails("{{ 1 / 0 }}", NULL, "division by zero");
    assert_fails("{{ 9223372036854775807 + 1 }}", NULL, "integer overflow");
}

static void safe_strings_escape_what_is_added_to_them(void **st) {
    (void)st;
    /* markupsafe: Markup + str escapes the str (functionary's template relies on it) */
    assert_renders(
        "{{ 'a<'|safe + '<b>' }} {{ '<x>' | e }} {{ '<'|safe ~ '<' }} {{ '<' + '\"'|safe }} "
        "{{ '<x>'|e|e }}",
        NULL, "a<&lt;b&gt; &lt;x&gt; << &lt;\" &lt;x&gt;");
}

static void strings_concatenate_repeat_and_test_membership(void **st) {
    (void)st;
    assert_renders("{{ 'a' ~ 1 ~ none ~ true }} {{ 'ab' * 3 }} {{ [1] * 2 }} {{ [1] + [2] }} {{ "
                   "'x' in 'xyz' }} "
                   "{{ 2 not in [1, 3] }} {{ 'k' in {'k': 1} }}",
                   NULL, "a1NoneTrue ababab [1, 1] [1, 2] True True True");
    assert_fails("{{ 'a' + 1 }}", NULL, "unsupported operand type(s) for +: 'str' and 'int'");
}

static void slices_follow_python_with_negative_steps(void **st) {
    (void)st;
    assert_renders(
        "{{ 'hello'[1:3] }} {{ 'hello'[::-1] }} {{ [1,2,3,4,5][-2:] }} {{ [1,2,3,4,5][::2] }} "
        "{{ [1,2,3,4,5][4:1:-1] }} {{ 'héllo'[1] }} {{ 'héllo'[-4:] }} {{ 'abc'[5] }}|",
        NULL, "el olleh [4, 5] [1, 3, 5] [5, 4, 3] é éllo |");
}

static void attribute_and_item_access_are_interchangeable(void **st) {
    (void)st;
    assert_renders("{{ messages[0].content }} {{ messages[0]['role'] }} {{ messages[-1].content }} "
                   "{{ messages[0].nope }}|{{ {'items': 1}['items'] }}",
                   MSGS, "Be nice. system Hi |1");
}

static void undefined_renders_empty_but_fails_when_used(void **st) {
    (void)st;
    assert_renders("[{{ x }}] {{ x is defined }} {{ x | default('d') }} {{ x | length }} "
                   "{% for i in x %}no{% endfor %}{{ none.foo }}",
                   NULL, "[] False d 0 ");
    assert_fails("{{ x.y }}", NULL, "'x' is undefined");
    assert_fails("{{ x + 1 }}", NULL, "'x' is undefined");
    assert_fails("{{ messages[0].nope.deeper }}", MSGS, "has no attribute 'nope'");
    assert_fails("{% for x in none %}{% endfor %}", NULL, "'NoneType' object is not iterable");
}

/* ------------------------------------------------------------------ filters, tests, methods */

static void tojson_matches_python_json_dumps(void **st) {
    (void)st;
    assert_renders("{{ {'a': [1, 2.5, none, true], 'b': 'ü\"\\n'} | tojson }}", NULL,
                   "{\"a\": [1, 2.5, null, true], \"b\": \"ü\\\"\\n\"}");
    assert_renders("{{ {'b': 1, 'a': {'c': []}} | tojson(indent=2) }}", NULL,
                   "{\n  \"b\": 1,\n  \"a\": {\n    \"c\": []\n  }\n}");
    assert_renders(
        "{{ {'b': 1, 'a': 2} | tojson(sort_keys=true) }} {{ 'é😀' | tojson(ensure_ascii=true) }} "
        "{{ {'a': [1, 2]} | tojson(separators=(',', ':')) }} {{ 10.0 | tojson }}",
        NULL, "{\"a\": 2, \"b\": 1} \"\\u00e9\\ud83d\\ude00\" {\"a\":[1,2]} 10.0");
    assert_fails("{{ x | tojson }}", NULL, "'x' is undefined");
}

static void string_filters_transform_text(void **st) {
    (void)st;
    assert_renders(
        "{{ '  Hi  ' | trim }}|{{ 'xxhixx' | trim('x') }}|{{ 'hello world' | title }}|"
        "{{ 'hELLO' | capitalize }}|{{ 'abc' | upper }}{{ 'ABC' | lower }}|{{ 'Ünï' | upper }}",
        NULL, "Hi|hi|Hello World|Hello|ABCabc|ÜNÏ");
    assert_renders("{{ 'hello' | replace('l', '') }} {{ 'a-b-c' | replace('-', '+', 1) }} "
                   "{{ 'l1\\nl2\\n\\nl4' | indent(2) }}|{{ 'a\\nb' | indent(4, first=true) }}",
                   NULL, "heo a+b-c l1\n  l2\n\n  l4|    a\n    b");
    assert_renders(
        "{{ '' | default('d') }} {{ '' | default('d', true) }} {{ 3 | string }} {{ 'x' | safe }}",
        NULL, " d 3 x");
}

static void sequence_filters_select_map_and_sort(void **st) {
    (void)st;
    assert_renders(
        "{{ messages | length }} {{ messages | map(attribute='role') | join(', ') }} "
        "{{ messages | selectattr('role', 'equalto', 'user') | list | length }} "
        "{{ messages | rejectattr('role', 'eq', 'system') | map(attribute='content') | first }}",
        MSGS, "2 system, user 1 Hi");
    assert_renders(
        "{{ [3, 1, 2] | sort }} {{ [3, 1, 2] | sort(reverse=true) }} {{ ['b', 'A', 'c'] | sort }} "
        "{{ [{'n': 2}, {'n': 1}] | sort(attribute='n') }} {{ [1, 2, 2, 3, 1] | unique | list }} "
        "{{ [1, 2, 3] | reverse | list }}",
        NULL, "[1, 2, 3] [3, 2, 1] ['A', 'b', 'c'] [{'n': 1}, {'n': 2}] [1, 2, 3] [3, 2, 1]");
    assert_renders(
        "{{ {'b': 1, 'a': 2} | dictsort }} {{ {'b': 1} | items | list }} {{ [1, 2, 3] | last }} "
        "{{ 3.7 | int }} {{ 'x' | int }} {{ '3.5' | float }} {{ -3 | abs }} {{ 2.567 | round(2) }} "
        "{{ 2.5 | round }} {{ [1,2,3,4,5] | batch(2) | list }} {{ [1, 5, 3] | max }} {{ [1, 2] | "
        "sum }}",
        NULL, "[('a', 2), ('b', 1)] [('b', 1)] 3 3 0 3.5 3 2.57 2.0 [[1, 2], [3, 4], [5]] 5 3");
    assert_renders(
        "{{ none | selectattr('type', 'equalto', 'x') | list }} {{ ['a', 'b'] | map('upper') | "
        "list }} "
        "{{ [1, 2, 3] | select('gt', 1) | list }} {{ [1, none] | reject('none') | list }}",
        NULL, "[] ['A', 'B'] [2, 3] [1]");
}

static void tests_classify_values_like_jinja(void **st) {
    (void)st;
    assert_renders(
        "{{ none is none }} {{ 'a' is string }} {{ 1 is number }} {{ true is integer }} "
        "{{ 1.0 is float }} {{ {} is mapping }} {{ 'a' is iterable }} {{ [] is sequence }} "
        "{{ true is boolean }} {{ 3 is odd }} {{ 4 is even }} {{ 9 is divisibleby 3 }} "
        "{{ 'a' is eq 'a' }} {{ x is iterable }} {{ 5 is gt 3 }} {{ 'a' is in 'abc' }} "
        "{{ none is not none }}",
        NULL,
        "True True True False True True True True True True True True True True True True False");
}

static void python_string_methods_behave_like_python(void **st) {
    (void)st;
    assert_renders(
        "{{ 'a,b,,c'.split(',') }} {{ '  a  b c '.split() }} {{ 'a b c d'.split(' ', 2) }} "
        "{{ 'a b c d'.rsplit(' ', 1) }} {{ '  a  b c '.split(None, 1) }}",
        NULL, "['a', 'b', '', 'c'] ['a', 'b', 'c'] ['a', 'b', 'c d'] ['a b c', 'd'] ['a', 'b c ']");
    assert_renders(
        "{{ 'hello'.startswith('he') }} {{ 'hello'.endswith(('lo', 'x')) }} {{ 'xxhixx'.strip('x') "
        "}} "
        "{{ '\\n\\nhi\\n'.lstrip('\\n') }}|{{ ' hi\\n'.rstrip() }}|{{ 'hello'.find('l') }} "
        "{{ 'hello'.rfind('l') }} {{ 'hello'.count('l') }} {{ 'a\\nb\\r\\nc'.splitlines() }} "
        "{{ '-'.join(['a', 'b']) }} {{ 'hello world'.title() }} {{ 'x'.upper() }}",
        NULL, "True True hi hi\n| hi|2 3 2 ['a', 'b', 'c'] a-b Hello World X");
    assert_renders("{{ '{} and {}'.format(1, 'b') }} {{ '{0}{name}'.format('x', name='y') }} {{ "
                   "'%s-%d' % ('a', 3) }}",
                   NULL, "1 and b xy a-3");
    assert_renders("{{ '%.2f|%5d|%-4s|%x|%r|%s%%|%03d' % (3.14159, 42, 'ab', 255, 'q', none, 7) }} "
                   "{{ '%.1f' | format(2.25) }} {{ 3 | round }} {{ -2.5 | round }}",
                   NULL, "3.14|   42|ab  |ff|'q'|None%|007 2.2 3 -2.0");
    assert_renders("{{ {'a': 1}.get('a') }} {{ {'a': 1}.get('b', 'z') }} {{ {'a': 1}.get('b') }} "
                   "{{ {'a': 1}.keys() | list }} {{ {'a': 1}.values() | list }}",
                   NULL, "1 z None ['a'] [1]");
    assert_renders("{% set l = [1] %}{% set _ = l.append(2) %}{{ l }} {{ l.index(2) }}", NULL,
                   "[1, 2] 1");
}

static void globals_raise_format_time_and_count(void **st) {
    (void)st;
    assert_renders(
        "{{ range(5) | list }} {{ range(1, 10, 3) | list }} {{ range(5, 0, -2) | list }} "
        "{{ dict(a=1) }} {{ namespace(a=1).a }}",
        NULL, "[0, 1, 2, 3, 4] [1, 4, 7] [5, 3, 1] {'a': 1} 1");
    jinja_opts o = {.now_unix = 1721995200}; /* 2024-07-26 12:00 UTC */
    cf_err e;
    char *s = render_opts("{{ strftime_now('%d %B %Y %H:%M') }}|{{ strftime_now('%b %-d') }}", NULL,
                          &o, &e);
    assert_non_null(s);
    assert_string_equal(s, "26 July 2024 12:00|Jul 26");
    free(s);
    assert_fails(
        "{% if true %}\n  {{ raise_exception('Only user and assistant roles') }}{% endif %}", NULL,
        "line 2, column 6: Only user and assistant roles");
}

/* ------------------------------------------------------------------ errors */

static void syntax_errors_report_line_and_column(void **st) {
    (void)st;
    assert_fails("ab\n  {{ x ", NULL, "line 2, column 3: unterminated variable tag");
    assert_fails("{% if x %}\n{% for a in b %}", NULL,
                 "unexpected end of template, expected 'endfor'");
    assert_fails("a\n{% endif %}", NULL, "line 2, column 4: unexpected 'endif'");
    assert_fails("{% frobnicate %}", NULL,
                 "line 1, column 4: unknown or unsupported tag 'frobnicate'");
    assert_fails("{{ 'abc }}", NULL, "line 1, column 4: unterminated string literal");
    assert_fails("{# never closed", NULL, "line 1, column 1: unterminated comment");
    assert_fails("{{ 1 + }}", NULL, "line 1, column 8: expected an expression, got '}}'");
    assert_fails("{% for 1 in x %}{% endfor %}", NULL, "expected a variable name");
    assert_fails("{{ a $ b }}", NULL, "unexpected character '$'");
    assert_fails("{% include 'x.j2' %}", NULL, "unsupported tag 'include'");
}

static void unknown_filters_and_tests_fail_at_use(void **st) {
    (void)st;
    assert_fails("\n{{ 'x' | frobnicate }}", NULL,
                 "line 2, column 10: no filter named 'frobnicate'");
    assert_fails("{{ 1 is frobnicated }}", NULL, "no test named 'frobnicated'");
    /* like Jinja inside if: an unknown filter on a path not taken is harmless */
    assert_renders("{% if false %}{{ x | from_json }}{% endif %}ok", NULL, "ok");
    assert_fails("{{ nosuch() }}", NULL, "'nosuch' is undefined");
    assert_fails("{{ 'a'.nosuch() }}", NULL, "'str object' has no attribute 'nosuch'");
    assert_fails("{{ 'a'() }}", NULL, "'str' object is not callable");
}

/* ------------------------------------------------------------------ limits */

static void deep_nesting_is_rejected_not_crashing(void **st) {
    (void)st;
    sb_t s = {0};
    sb_append(&s, "{{ ");
    for (int i = 0; i < 100000; i++)
        sb_putc(&s, '(');
    sb_putc(&s, 'x');
    for (int i = 0; i < 100000; i++)
        sb_putc(&s, ')');
    sb_append(&s, " }}");
    cf_err e;
    char *r = render(sb_str(&s), NULL, &e);
    assert_null(r);
    assert_non_null(strstr(e.msg, "nested too deeply"));
    sb_clear(&s);
    for (int i = 0; i < 5000; i++)
        sb_append(&s, "{% if true %}");
    r = render(sb_str(&s), NULL, &e);
    assert_null(r);
    assert_non_null(strstr(e.msg, "nested too deeply"));
    sb_clear(&s);
    sb_append(&s, "{{ ");
    for (int i = 0; i < 100000; i++)
        sb_append(&s, "not ");
    sb_append(&s, "x }}");
    r = render(sb_str(&s), NULL, &e);
    assert_null(r);
    assert_non_null(strstr(e.msg, "nested too deeply"));
    sb_free(&s);
}

static void huge_ranges_and_loops_are_bounded(void **st) {
    (void)st;
    assert_fails("{% for i in range(10000000000) %}{% endfor %}", NULL, "exceeds the limit");
    assert_fails("{% for a in range(1000) %}{% for b in range(1000) %}{% for c in range(10) %}"
                 "{% endfor %}{% endfor %}{% endfor %}",
                 NULL, "loop iterations");
    jinja_opts o = {.max_iterations = 50};
    cf_err e;
    char *r = render_opts("{% for i in range(40) %}{% for j in range(2) %}{% endfor %}{% endfor %}",
                          NULL, &o, &e);
    assert_null(r);
    assert_non_null(strstr(e.msg, "more than 50 loop iterations"));
}

static void recursive_macros_are_bounded(void **st) {
    (void)st;
    assert_fails("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", NULL,
                 "macro calls nested deeper than");
    assert_fails(
        "{% macro a() %}{{ b() }}{% endmacro %}{% macro b() %}{{ a() }}{% endmacro %}{{ a() }}",
        NULL, "macro calls nested deeper than");
}

static void long_chains_and_deep_recursion_stay_within_the_stack(void **st) {
    (void)st;
    cf_err e;
    sb_t s = {0};
    /* chains build deep trees without parser recursion: a|f|f|f..., 1+1+1... */
    sb_append(&s, "{{ 'x'");
    for (int i = 0; i < 100000; i++)
        sb_append(&s, "|trim");
    sb_append(&s, " }}");
    char *r = render(sb_str(&s), NULL, &e);
    assert_null(r);
    assert_non_null(strstr(e.msg, "expression nested too deeply"));
    sb_clear(&s);
    sb_append(&s, "{{ 1");
    for (int i = 0; i < 100000; i++)
        sb_append(&s, " + 1");
    sb_append(&s, " }}");
    r = render(sb_str(&s), NULL, &e);
    assert_null(r);
    assert_non_null(strstr(e.msg, "expression nested too deeply"));
    /* a macro recursing from inside deep blocks and a deep expression */
    sb_clear(&s);
    sb_append(&s, "{% macro f(k) %}");
    for (int i = 0; i < 150; i++)
        sb_append(&s, "{% if true %}");
    sb_append(&s, "{% if k > 0 %}{{ f(k - 1)");
    for (int i = 0; i < 250; i++)
        sb_append(&s, "|string");
    sb_append(&s, " }}{% endif %}");
    for (int i = 0; i < 150; i++)
        sb_append(&s, "{% endif %}");
    sb_append(&s, "{% endmacro %}{{ f(99) }}");
    r = render(sb_str(&s), NULL, &e);
    assert_null(r);
    assert_true(strstr(e.msg, "stack limit") || strstr(e.msg, "nested deeper"));
    jinja_opts o = {.max_stack = 64 * 1024};
    r = render_opts(sb_str(&s), NULL, &o, &e);
    assert_null(r);
    assert_non_null(strstr(e.msg, "stack limit reached"));
    sb_free(&s);
}

static void output_and_memory_are_bounded(void **st) {
    (void)st;
    jinja_opts o = {.max_output = 1000};
    cf_err e;
    char *r = render_opts("{% for i in range(1000) %}0123456789{% endfor %}", NULL, &o, &e);
    assert_null(r);
    assert_non_null(strstr(e.msg, "output exceeds 1000 bytes"));
    assert_fails("{{ 'x' * 100000000000 }}", NULL, "too large");
    assert_fails("{{ ('a' * 1000000) | replace('a', 'b' * 1000000) }}", NULL, "exceeds");
    assert_fails("{{ ('\\n' * 1000000) | indent(1000, blank=true) }}", NULL, "exceeds");
    assert_fails("{{ '%999999999d' % 1 }}", NULL, "format width or precision too large");
    /* doubling a string in a loop hits the string or memory bound */
    assert_fails("{% set ns = namespace(s='xxxxxxxxxxxxxxxx') %}{% for i in range(64) %}"
                 "{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s | length }}",
                 NULL, "bytes");
}

static void self_containing_values_render_without_crashing(void **st) {
    (void)st;
    cf_err e;
    char *r = render("{% set l = [] %}{% set _ = l.append(l) %}{{ l }}{{ l == l }}", NULL, &e);
    assert_non_null(r);
    assert_non_null(strstr(r, "[[[[...]]]]"));
    free(r);
    r = render("{% set ns = namespace() %}{% set ns.me = ns %}{{ ns | string | length > 0 }}", NULL,
               &e);
    assert_non_null(r);
    assert_string_equal(r, "True");
    free(r);
    assert_fails("{% set l = [] %}{% set _ = l.append(l) %}{{ l | tojson }}", NULL,
                 "nesting deeper than");
}

static void huge_or_deeply_nested_variables_are_handled(void **st) {
    (void)st;
    cf_err e;
    jinja_template *t = jinja_parse("{{ v | length }}", 16, &e);
    assert_non_null(t);
    /* built in code, so jansson's parser depth limit does not apply */
    json_t *deep = json_array();
    for (int i = 0; i < 2000; i++) {
        json_t *outer = json_array();
        json_array_append_new(outer, deep);
        deep = outer;
    }
    json_t *vars = json_pack("{s:o}", "v", deep);
    sb_t out = {0};
    assert_int_equal(jinja_render(t, vars, NULL, &out, &e), CF_EINVAL);
    assert_non_null(strstr(e.msg, "'v' is nested deeper than 512 levels"));
    json_decref(vars);
    /* an object with many keys loads in linear time */
    json_t *big = json_object();
    for (int i = 0; i < 200000; i++) {
        char k[16];
        snprintf(k, sizeof k, "k%d", i);
        json_object_set_new(big, k, json_integer(i));
    }
    vars = json_pack("{s:o}", "v", big);
    assert_int_equal(jinja_render(t, vars, NULL, &out, &e), 0);
    assert_string_equal(sb_str(&out), "200000");
    json_decref(vars);
    sb_free(&out);
    jinja_free(t);
}

static void parsed_template_renders_repeatedly_with_new_variables(void **st) {
    (void)st;
    cf_err e;
    jinja_template *t = jinja_parse("{{ name }}!", 11, &e);
    assert_non_null(t);
    for (int i = 0; i < 3; i++) {
        json_t *v = json_pack("{s:i}", "name", i);
        sb_t out = {0};
        assert_int_equal(jinja_render(t, v, NULL, &out, &e), 0);
        char want[8];
        snprintf(want, sizeof want, "%d!", i);
        assert_string_equal(sb_str(&out), want);
        sb_free(&out);
        json_decref(v);
    }
    jinja_free(t);
    /* non-object variables are refused */
    t = jinja_parse("x", 1, &e);
    json_t *arr = json_array();
    sb_t out = {0};
    assert_int_equal(jinja_render(t, arr, NULL, &out, &e), CF_EINVAL);
    assert_non_null(strstr(e.msg, "must be a JSON object"));
    json_decref(arr);
    sb_free(&out);
    jinja_free(t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(dash_markers_strip_whitespace_on_their_side),
        cmocka_unit_test(trim_and_lstrip_blocks_remove_tag_lines),
        cmocka_unit_test(for_loop_exposes_loop_variables),
        cmocka_unit_test(for_loop_supports_else_filters_and_unpacking),
        cmocka_unit_test(recursive_loops_render_nested_data),
        cmocka_unit_test(break_and_continue_control_the_loop),
        cmocka_unit_test(set_in_loop_stays_local_but_namespace_carries_out),
        cmocka_unit_test(block_set_captures_rendered_text),
        cmocka_unit_test(macros_take_defaults_keywords_and_caller),
        cmocka_unit_test(filter_and_generation_blocks_render_their_body),
        cmocka_unit_test(values_render_with_python_str_and_repr),
        cmocka_unit_test(numbers_follow_python_arithmetic_and_formatting),
        cmocka_unit_test(strings_concatenate_repeat_and_test_membership),
        cmocka_unit_test(safe_strings_escape_what_is_added_to_them),
        cmocka_unit_test(slices_follow_python_with_negative_steps),
        cmocka_unit_test(attribute_and_item_access_are_interchangeable),
        cmocka_unit_test(undefined_renders_empty_but_fails_when_used),
        cmocka_unit_test(tojson_matches_python_json_dumps),
        cmocka_unit_test(string_filters_transform_text),
        cmocka_unit_test(sequence_filters_select_map_and_sort),
        cmocka_unit_test(tests_classify_values_like_jinja),
        cmocka_unit_test(python_string_methods_behave_like_python),
        cmocka_unit_test(globals_raise_format_time_and_count),
        cmocka_unit_test(syntax_errors_report_line_and_column),
        cmocka_unit_test(unknown_filters_and_tests_fail_at_use),
        cmocka_unit_test(deep_nesting_is_rejected_not_crashing),
        cmocka_unit_test(huge_ranges_and_loops_are_bounded),
        cmocka_unit_test(recursive_macros_are_bounded),
        cmocka_unit_test(long_chains_and_deep_recursion_stay_within_the_stack),
        cmocka_unit_test(output_and_memory_are_bounded),
        cmocka_unit_test(self_containing_values_render_without_crashing),
        cmocka_unit_test(huge_or_deeply_nested_variables_are_handled),
        cmocka_unit_test(parsed_template_renders_repeatedly_with_new_variables),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
