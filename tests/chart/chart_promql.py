"""A small, deliberately simple PromQL scanner: which metric names does an expression read?

It is not a parser. It removes what cannot be a metric name (string literals, label matchers in `{}`, range and
subquery selectors in `[]`, the label lists of `by/without/on/ignoring/group_left/group_right`, Grafana variables,
numbers and durations), then every remaining identifier that is not a keyword, an aggregation operator, or followed
by `(` (a function call) is a metric name. That covers what our alerts and dashboards write; anything it cannot
make sense of (unbalanced brackets) raises, so a bad expression fails the test instead of passing silently.
"""
from __future__ import annotations

import re

KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset",
    "inf", "nan", "start", "end",
}
AGGREGATIONS = {
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk", "topk",
    "quantile", "limitk", "limit_ratio",
}
LABEL_LIST_KEYWORDS = ("by", "without", "on", "ignoring", "group_left", "group_right")
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")

_STRING = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
_GRAFANA_VAR = re.compile(r"\$\{[^}]*\}|\$\$?[A-Za-z_][A-Za-z0-9_]*|\[\[[A-Za-z0-9_]+\]\]")
_LABEL_LIST = re.compile(r"\b(" + "|".join(LABEL_LIST_KEYWORDS) + r")\s*\(([^()]*)\)")
_NUMBER = re.compile(r"(?<![A-Za-z0-9_:])(?:0x[0-9a-fA-F]+|[0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?"
                     r"(?:ms|s|m|h|d|w|y)?(?:[0-9]+(?:ms|s|m|h|d|w|y))*)")
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_LABEL_VALUES = re.compile(r"^\s*label_values\s*\((.*)\)\s*$", re.S)


def _strip_bracketed(text: str, open_ch: str, close_ch: str) -> str:
    out, depth = [], 0
    for ch in text:
        if ch == open_ch:
            depth += 1
            continue
        if ch == close_ch:
            depth -= 1
            if depth < 0:
                raise ValueError(f"unbalanced {close_ch!r} in {text!r}")
            continue
        if depth == 0:
            out.append(ch)
    if depth:
        raise ValueError(f"unbalanced {open_ch!r} in {text!r}")
    return "".join(out)


def metric_names(expr: str) -> set[str]:
    """Metric names read by a PromQL expression (Grafana variables allowed)."""
    text = _STRING.sub(" ", expr)
    text = _GRAFANA_VAR.sub(" ", text)
    text = _strip_bracketed(text, "{", "}")
    text = _strip_bracketed(text, "[", "]")
    if text.count("(") != text.count(")"):
        raise ValueError(f"unbalanced parentheses in {expr!r}")
    text = _LABEL_LIST.sub(r" \1 ", text)
    text = _NUMBER.sub(" ", text)
    names: set[str] = set()
    for m in _IDENT.finditer(text):
        word = m.group(0)
        rest = text[m.end():].lstrip()
        if rest.startswith("("):
            continue  # a function call, or an aggregation written as sum(...)
        if word.lower() in KEYWORDS or word in AGGREGATIONS:
            continue
        names.add(word)
    return names


def grafana_query_metric_names(query: str) -> set[str]:
    """Metric names of a Grafana Prometheus variable query: label_values(metric{...}, label) or plain PromQL."""
    m = _LABEL_VALUES.match(query)
    if m:
        args = m.group(1)
        if "," not in _strip_bracketed(args, "{", "}"):
            return set()  # label_values(label): no metric
        selector = args.rsplit(",", 1)[0]
        return metric_names(selector)
    for fn in ("label_names", "metrics", "query_result"):
        m = re.match(rf"^\s*{fn}\s*\((.*)\)\s*$", query, re.S)
        if m:
            return metric_names(m.group(1)) if m.group(1).strip() else set()
    return metric_names(query)


def base_names(name: str) -> set[str]:
    """A queried series name and the metric family names it may belong to (histogram series, counters)."""
    candidates = {name}
    for suffix in HISTOGRAM_SUFFIXES:
        if name.endswith(suffix):
            candidates.add(name[: -len(suffix)])
    if name.endswith("_total"):
        candidates.add(name[: -len("_total")])
    return candidates


_MATCHER = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)")


def label_names(expr: str) -> set[str]:
    """Label names an expression filters or groups on: in `{...}` matchers and `by/without/on/...` lists."""
    text = _STRING.sub('""', expr)
    text = _GRAFANA_VAR.sub(" ", text)
    labels: set[str] = set()
    for block in re.findall(r"\{([^{}]*)\}", text):
        labels.update(_MATCHER.findall(block))
    for _, group in _LABEL_LIST.findall(text):
        labels.update(x.strip() for x in group.split(",") if x.strip())
    return labels
