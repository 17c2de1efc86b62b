//! Resource Query Language, as APS (RDE) and CONNECT filter listings with it:
//! `implementing(<type>),eq(commonName,NW%20Finance)&limit(0,10)`.
//!
//! Supported: `eq`, `ne`, `in`, `out`, `like`, `ilike` (`*` and `?` wildcards), `and`, `or`,
//! `not`, `implementing` (APS: `aps.type` equals), `limit(start,count)` (APS), and the order
//! of a listing: `ordering(name,-created)` (CONNECT) or `sort(+name,-created)` (APS), which a
//! listing applies with [`Query::sort`]. `select` is accepted and ignored. Terms are joined by `&` or `,`; plain
//! `key=value` pairs (CONNECT's `limit=10&offset=0`, or a simple filter) are returned apart.
//! Field names are dotted paths into the resource's JSON (`template.id`, `aps.id`); values
//! are percent-decoded.

use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Atom(String),
    List(Vec<Node>),
    Call(String, Vec<Node>),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Filter {
    Eq(String, String),
    Ne(String, String),
    In(String, Vec<String>),
    Out(String, Vec<String>),
    Like {
        path: String,
        pattern: String,
        ignore_case: bool,
    },
    Implementing(String),
    And(Vec<Filter>),
    Or(Vec<Filter>),
    Not(Box<Filter>),
    /// `select` (and an order inside a filter): no effect on which resources match.
    Ignored,
}

/// A parsed query string.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Query {
    pub filters: Vec<Filter>,
    /// APS `limit(start,count)`.
    pub limit: Option<(usize, usize)>,
    /// `ordering(…)` / `sort(…)`: dotted paths, each ascending or descending (`-`).
    pub order: Vec<SortKey>,
    /// Plain `key=value` pairs, decoded.
    pub params: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid RQL query: {0}")]
pub(crate) struct RqlError(String);

fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// Parses the raw (still percent-encoded) query string.
pub(crate) fn parse(raw: &str) -> Result<Query, RqlError> {
    let mut query = Query::default();
    for part in raw.split('&').filter(|p| !p.is_empty()) {
        let is_call = part
            .find('(')
            .is_some_and(|paren| part.find('=').is_none_or(|eq| paren < eq));
        if !is_call {
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            query
                .params
                .push((decode(&k.replace('+', " ")), decode(&v.replace('+', " "))));
            continue;
        }
        let mut parser = Parser {
            text: part.as_bytes(),
            at: 0,
        };
        for node in parser.terms(None)? {
            match node {
                Node::Call(name, args) if name == "limit" => query.limit = Some(limit(&args)?),
                Node::Call(name, args) if name == "ordering" || name == "sort" => {
                    query.order = atoms(&args)?.iter().map(|k| SortKey::parse(k)).collect();
                }
                other => query.filters.push(filter(other)?),
            }
        }
    }
    Ok(query)
}

/// One key of an order: `name`, `+name` (ascending) or `-name` (descending).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SortKey {
    path: String,
    descending: bool,
}

impl SortKey {
    fn parse(key: &str) -> SortKey {
        match key.strip_prefix('-') {
            Some(path) => SortKey {
                path: path.to_string(),
                descending: true,
            },
            None => SortKey {
                path: key.strip_prefix('+').unwrap_or(key).to_string(),
                descending: false,
            },
        }
    }

    /// Numbers by value, anything else by its text; a resource without the field after those
    /// with it (as PostgreSQL puts NULLs last in ascending order).
    fn compare(&self, a: &Value, b: &Value) -> std::cmp::Ordering {
        let at = |doc| lookup(doc, &self.path).filter(|v| !v.is_null());
        let order = match (at(a), at(b)) {
            (Some(Value::Number(x)), Some(Value::Number(y))) => {
                let (x, y) = (x.as_f64().unwrap_or(f64::NAN), y.as_f64().unwrap_or(f64::NAN));
                x.total_cmp(&y)
            }
            (Some(x), Some(y)) => text(x).cmp(&text(y)),
            (x, y) => y.is_some().cmp(&x.is_some()),
        };
        if self.descending { order.reverse() } else { order }
    }
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn limit(args: &[Node]) -> Result<(usize, usize), RqlError> {
    let number = |n: &Node| match n {
        Node::Atom(a) => a
            .parse::<usize>()
            .map_err(|_| RqlError(format!("limit takes numbers, not {a:?}"))),
        other => Err(RqlError(format!("limit takes numbers, not {other:?}"))),
    };
    match args {
        [count] => Ok((0, number(count)?)),
        [start, count] => Ok((number(start)?, number(count)?)),
        _ => Err(RqlError("limit takes (start,count)".into())),
    }
}

fn atom(node: &Node) -> Result<String, RqlError> {
    match node {
        Node::Atom(a) => Ok(a.clone()),
        other => Err(RqlError(format!("expected a value, found {other:?}"))),
    }
}

fn atoms(nodes: &[Node]) -> Result<Vec<String>, RqlError> {
    match nodes {
        [Node::List(items)] => items.iter().map(atom).collect(),
        items => items.iter().map(atom).collect(),
    }
}

fn filter(node: Node) -> Result<Filter, RqlError> {
    let Node::Call(name, args) = node else {
        return Err(RqlError(format!("expected an operator, found {node:?}")));
    };
    let field_and = |args: &[Node]| -> Result<(String, Vec<Node>), RqlError> {
        let (first, rest) = args
            .split_first()
            .ok_or_else(|| RqlError(format!("{name} needs a field")))?;
        Ok((atom(first)?, rest.to_vec()))
    };
    Ok(match name.as_str() {
        "eq" | "ne" | "like" | "ilike" => {
            let (path, rest) = field_and(&args)?;
            let [value] = rest.as_slice() else {
                return Err(RqlError(format!("{name} takes (field,value)")));
            };
            let value = atom(value)?;
            match name.as_str() {
                "eq" => Filter::Eq(path, value),
                "ne" => Filter::Ne(path, value),
                _ => Filter::Like {
                    path,
                    pattern: value,
                    ignore_case: name == "ilike",
                },
            }
        }
        "in" | "out" => {
            let (path, rest) = field_and(&args)?;
            let values = atoms(&rest)?;
            if name == "in" {
                Filter::In(path, values)
            } else {
                Filter::Out(path, values)
            }
        }
        "implementing" => match args.as_slice() {
            [t] => Filter::Implementing(atom(t)?),
            _ => return Err(RqlError("implementing takes one type".into())),
        },
        "and" | "or" => {
            let children = args.into_iter().map(filter).collect::<Result<Vec<_>, _>>()?;
            if name == "and" {
                Filter::And(children)
            } else {
                Filter::Or(children)
            }
        }
        "not" => match <[Node; 1]>::try_from(args) {
            Ok([child]) => Filter::Not(Box::new(filter(child)?)),
            Err(_) => return Err(RqlError("not takes one operator".into())),
        },
        "select" | "sort" | "ordering" => Filter::Ignored,
        other => return Err(RqlError(format!("unknown operator {other}"))),
    })
}

struct Parser<'a> {
    text: &'a [u8],
    at: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.text.get(self.at).copied()
    }

    /// Terms separated by `,` up to `close` (or the end).
    fn terms(&mut self, close: Option<u8>) -> Result<Vec<Node>, RqlError> {
        let mut nodes = Vec::new();
        loop {
            if self.peek() == close {
                self.at += usize::from(close.is_some());
                return Ok(nodes);
            }
            nodes.push(self.term()?);
            match self.peek() {
                Some(b',') => self.at += 1,
                c if c == close => {}
                Some(c) => return Err(RqlError(format!("unexpected {:?} at {}", char::from(c), self.at))),
                None => return Err(RqlError("unbalanced parentheses".into())),
            }
        }
    }

    fn term(&mut self) -> Result<Node, RqlError> {
        if self.peek() == Some(b'(') {
            self.at += 1;
            return Ok(Node::List(self.terms(Some(b')'))?));
        }
        let start = self.at;
        while self.peek().is_some_and(|c| !matches!(c, b',' | b'(' | b')')) {
            self.at += 1;
        }
        let token = String::from_utf8_lossy(&self.text[start..self.at]).into_owned();
        if self.peek() == Some(b'(') {
            self.at += 1;
            return Ok(Node::Call(token, self.terms(Some(b')'))?));
        }
        Ok(Node::Atom(decode(&token)))
    }
}

/// The value at a dotted path.
fn lookup<'a>(doc: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(doc, |v, key| v.get(key))
}

/// The value at a dotted path, as text (`null` for null, absent: `None`).
fn field(doc: &Value, path: &str) -> Option<String> {
    lookup(doc, path).map(text)
}

/// `*` any run, `?` any one character.
fn glob(pattern: &[char], text: &[char]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some(('*', rest)) => (0..=text.len()).any(|i| glob(rest, &text[i..])),
        Some((p, rest)) => text
            .split_first()
            .is_some_and(|(t, tail)| (*p == '?' || p == t) && glob(rest, tail)),
    }
}

impl Filter {
    pub fn matches(&self, doc: &Value) -> bool {
        match self {
            Filter::Eq(path, v) => field(doc, path).as_deref() == Some(v.as_str()),
            Filter::Ne(path, v) => field(doc, path).as_deref() != Some(v.as_str()),
            Filter::In(path, vs) => field(doc, path).is_some_and(|f| vs.contains(&f)),
            Filter::Out(path, vs) => field(doc, path).is_none_or(|f| !vs.contains(&f)),
            Filter::Like {
                path,
                pattern,
                ignore_case,
            } => field(doc, path).is_some_and(|f| {
                let fold = |s: &str| {
                    if *ignore_case {
                        s.to_lowercase()
                    } else {
                        s.to_string()
                    }
                };
                let pattern: Vec<char> = fold(pattern).chars().collect();
                let text: Vec<char> = fold(&f).chars().collect();
                glob(&pattern, &text)
            }),
            Filter::Implementing(t) => field(doc, "aps.type").as_deref() == Some(t.as_str()),
            Filter::And(all) => all.iter().all(|f| f.matches(doc)),
            Filter::Or(any) => any.iter().any(|f| f.matches(doc)),
            Filter::Not(f) => !f.matches(doc),
            Filter::Ignored => true,
        }
    }
}

impl Query {
    /// Puts `docs` in the query's order; a stable sort, so resources equal in every key keep
    /// the order they came in.
    pub fn sort(&self, docs: &mut [Value]) {
        docs.sort_by(|a, b| {
            self.order
                .iter()
                .map(|key| key.compare(a, b))
                .find(|o| o.is_ne())
                .unwrap_or(std::cmp::Ordering::Equal)
        });
    }

    /// Every filter (and every plain pair not in `reserved`, as `eq`) matches.
    pub fn matches(&self, doc: &Value, reserved: &[&str]) -> bool {
        self.filters.iter().all(|f| f.matches(doc))
            && self
                .params
                .iter()
                .filter(|(k, _)| !reserved.contains(&k.as_str()))
                .all(|(k, v)| field(doc, k).as_deref() == Some(v.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn aps_lookups() {
        let q = parse("implementing(http://www.odin.com/rde/report-template/1.1),eq(commonName,NW%20Finance),limit(0,1)")
            .expect("rql");
        assert_eq!(q.limit, Some((0, 1)));
        let doc = json!({"aps": {"type": "http://www.odin.com/rde/report-template/1.1"}, "commonName": "NW Finance"});
        assert!(q.matches(&doc, &[]));
        let other =
            json!({"aps": {"type": "http://www.odin.com/rde/report-template/1.1"}, "commonName": "NW"});
        assert!(!q.matches(&other, &[]));
    }

    #[test]
    fn connect_filters_and_paging() {
        let q =
            parse("and(eq(template.id,RT-1),in(status,(pending,succeeded)))&limit=10&offset=20&name=a%20b")
                .expect("rql");
        assert!(q.params.contains(&("limit".into(), "10".into())));
        let doc =
            json!({"template": {"id": "RT-1"}, "status": "pending", "name": "a b", "progress": {"value": 3}});
        assert!(q.matches(&doc, &["limit", "offset"]));
        assert!(!q.matches(
            &json!({"template": {"id": "RT-2"}, "status": "pending", "name": "a b"}),
            &["limit", "offset"]
        ));
        let like = parse("ilike(name,*B),ne(progress.value,4),not(eq(status,failed))").expect("rql");
        assert!(like.matches(&doc, &[]));
        assert!(parse("frobnicate(x)").is_err());
        let by = |rql: &str| {
            let mut docs = vec![
                json!({"name": "b", "progress": {"value": 10}}),
                json!({"name": "a", "progress": {"value": 9}}),
                json!({"name": "c"}),
                json!({"name": "a", "progress": {"value": 100}}),
            ];
            parse(rql).expect("rql").sort(&mut docs);
            docs.iter()
                .map(|d| format!("{}{}", d["name"].as_str().unwrap_or("?"), d["progress"]["value"]))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            by("ordering(name,-progress.value)"),
            ["a100", "a9", "b10", "cnull"]
        );
        assert_eq!(
            by("ordering(progress.value)"),
            ["a9", "b10", "a100", "cnull"],
            "numbers by value"
        );
        assert_eq!(
            by("sort(-name)&limit=2"),
            ["cnull", "b10", "a9", "a100"],
            "stable"
        );
        assert!(parse("eq(a,b").is_err());
    }
}
