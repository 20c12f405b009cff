//! Cuts a YAML text into independently parseable pieces without parsing it: one per
//! `---` document, and one per item of a document that is a block-style `kind: List`
//! (`kubectl get -o yaml` output). Anything unusual makes [`split`] give up (`None`), and
//! the caller parses the text whole: the cutter only has to be right when it answers.

use std::borrow::Cow;

/// What part of a document a piece is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    Document,
    /// One entry of a list's `items`, 0-based.
    Item(usize),
    /// A list's lines other than its items (`apiVersion`, `kind`, `metadata` …): holds no
    /// objects, parsed only so that a syntax error there is not missed.
    ListRest,
}

/// A piece of the text: a whole document, one item of a list, or the rest of a list.
#[derive(Debug, PartialEq, Eq)]
pub struct Piece<'a> {
    /// 1-based document number, as errors report it.
    pub doc: usize,
    pub part: Part,
    /// The piece's text as it stands in the input (the cache key).
    pub raw: Cow<'a, str>,
    /// For list items, the column of the item's `-`.
    indent: usize,
}

impl Piece<'_> {
    /// The piece as a YAML document of its own: list items lose their `- ` and indentation.
    pub fn text(&self) -> Cow<'_, str> {
        if !matches!(self.part, Part::Item(_)) {
            return Cow::Borrowed(&self.raw);
        }
        let cut = self.indent + 2;
        let mut out = String::with_capacity(self.raw.len());
        for (n, line) in self.raw.split_inclusive('\n').enumerate() {
            let body = line.trim_end_matches(['\n', '\r']);
            if n == 0 {
                if body.len() < cut {
                    out.push('\n'); // a bare `-`: the item starts on the next line
                } else {
                    out.push_str(&line[cut..]);
                }
            } else if indentation(body) >= cut {
                out.push_str(&line[cut..]);
            } else {
                // Blank lines, and comments less indented than the item (checked by split).
                out.push('\n');
            }
        }
        Cow::Owned(out)
    }
}

fn indentation(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

fn is_blank_or_comment(line: &str) -> bool {
    let t = line.trim_start_matches([' ', '\t']);
    t.is_empty() || t.starts_with('#')
}

/// Lines with their byte offsets: (start, end including the newline, line without it).
fn lines(text: &str) -> impl Iterator<Item = (usize, usize, &str)> {
    let mut at = 0;
    text.split_inclusive('\n').map(move |line| {
        let start = at;
        at += line.len();
        (start, at, line.trim_end_matches(['\n', '\r']))
    })
}

/// Cuts the text into pieces, or `None` if it is not plainly shaped enough to cut.
pub fn split(text: &str) -> Option<Vec<Piece<'_>>> {
    if text.trim_start().starts_with(['{', '[']) {
        return None;
    }
    let mut pieces = Vec::new();
    for (n, (start, end)) in documents(text)?.into_iter().enumerate() {
        let doc = n + 1;
        match list_items(&text[start..end]) {
            ListShape::NotAList => pieces.push(Piece {
                doc,
                part: Part::Document,
                raw: Cow::Borrowed(&text[start..end]),
                indent: 0,
            }),
            ListShape::Items(items) => {
                let doc_text = &text[start..end];
                let (first, last) = (items[0].0, items[items.len() - 1].1);
                pieces.push(Piece {
                    doc,
                    part: Part::ListRest,
                    raw: Cow::Owned([&doc_text[..first], &doc_text[last..]].concat()),
                    indent: 0,
                });
                pieces.extend(
                    items
                        .into_iter()
                        .enumerate()
                        .map(|(i, (s, e, indent))| Piece {
                            doc,
                            part: Part::Item(i),
                            raw: Cow::Borrowed(&doc_text[s..e]),
                            indent,
                        }),
                )
            }
            ListShape::Unsure => return None,
        }
    }
    Some(pieces)
}

/// Byte ranges of the documents, as a YAML parser numbers them: the text before the
/// first `---` is a document only if it holds something.
fn documents(text: &str) -> Option<Vec<(usize, usize)>> {
    let mut docs = Vec::new();
    let (mut start, mut explicit, mut content) = (0, false, false);
    for (line_start, line_end, line) in lines(text) {
        if let Some(rest) = line.strip_prefix("---") {
            if !(rest.is_empty() || rest.starts_with([' ', '\t'])) {
                content = true;
                continue;
            }
            if !is_blank_or_comment(rest) {
                return None; // `--- value` or `--- !tag`
            }
            if explicit || content {
                docs.push((start, line_start));
            }
            (start, explicit, content) = (line_end, true, false);
        } else if line.starts_with("...") || line.starts_with('%') {
            return None;
        } else if !is_blank_or_comment(line) {
            content = true;
        }
    }
    if explicit || content {
        docs.push((start, text.len()));
    }
    Some(docs)
}

enum ListShape {
    NotAList,
    /// Items as (start, end, column of the dash) relative to the document.
    Items(Vec<(usize, usize, usize)>),
    Unsure,
}

/// The items of a document whose top level is `kind: …List` with a block `items:`
/// sequence whose entries all start with `- ` at one column.
fn list_items(doc: &str) -> ListShape {
    let mut kind_is_list = false;
    let mut items_seen = false;
    let mut items = Vec::new();
    // While inside `items:`: the dash column (once known) and the current item's start.
    let mut in_items: Option<(Option<usize>, Option<usize>)> = None;
    for (start, _end, line) in lines(doc) {
        if let Some((column, current)) = in_items.as_mut() {
            if is_blank_or_comment(line) {
                continue;
            }
            let ind = indentation(line);
            let rest = &line[ind..];
            let dash = rest == "-" || rest.starts_with("- ");
            match *column {
                None if dash => {
                    *column = Some(ind);
                    *current = Some(start);
                    continue;
                }
                Some(c) if dash && ind == c => {
                    if let Some(s) = current.replace(start) {
                        items.push((s, start, c));
                    }
                    continue;
                }
                Some(c) if ind >= c + 2 => continue,
                _ if ind == 0 && !dash => {
                    // Back at the top level: the sequence ended (a column-0 non-dash line).
                    if let (Some(c), Some(s)) = (*column, *current) {
                        items.push((s, start, c));
                    } else {
                        return ListShape::Unsure; // `items:` with no entries (null)
                    }
                    in_items = None;
                }
                _ => return ListShape::Unsure,
            }
        }
        // Indented lines and column-0 sequence entries belong to the previous key's value.
        if is_blank_or_comment(line) || line.starts_with([' ', '\t', '-']) {
            continue;
        }
        if let Some(value) = line.strip_prefix("kind:") {
            let value = value.split(" #").next().unwrap_or("").trim();
            let value = value.trim_matches(|c| c == '"' || c == '\'');
            kind_is_list = value.ends_with("List");
        } else if let Some(value) = line.strip_prefix("items:") {
            if items_seen || !value.trim().is_empty() {
                return ListShape::Unsure; // flow style (`items: []`) or a repeated key
            }
            items_seen = true;
            in_items = Some((None, None));
        }
    }
    if let Some((column, current)) = in_items {
        match (column, current) {
            (Some(c), Some(s)) => items.push((s, doc.len(), c)),
            _ => return ListShape::Unsure,
        }
    }
    match (kind_is_list, items_seen) {
        (true, true) => ListShape::Items(items),
        (false, _) => ListShape::NotAList,
        (true, false) => ListShape::Unsure,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pieces that hold objects, as (document, item, text).
    fn texts(text: &str) -> Vec<(usize, Option<usize>, String)> {
        split(text)
            .expect("cuttable")
            .iter()
            .filter_map(|p| match p.part {
                Part::Document => Some((p.doc, None, p.text().into_owned())),
                Part::Item(i) => Some((p.doc, Some(i), p.text().into_owned())),
                Part::ListRest => None,
            })
            .collect()
    }

    #[test]
    fn documents_are_numbered_as_a_parser_numbers_them() {
        let t = "# header\n---\na: 1\n---\n\n---   # c\nb: 2\n";
        let got = texts(t);
        assert_eq!(
            got,
            vec![
                (1, None, "a: 1\n".to_string()),
                (2, None, "\n".to_string()),
                (3, None, "b: 2\n".to_string())
            ]
        );
        assert_eq!(
            texts("a: 1\n---\nb: 2"),
            vec![(1, None, "a: 1\n".into()), (2, None, "b: 2".into())]
        );
    }

    #[test]
    fn list_items_are_cut_and_dedented() {
        let t = "apiVersion: v1\nitems:\n- apiVersion: v1\n  kind: Service\n# note\n  metadata:\n    name: a\n-   {kind: Node}\n\n-\n  kind: X\nkind: List\nmetadata: {}\n";
        assert_eq!(
            texts(t),
            vec![
                (
                    1,
                    Some(0),
                    "apiVersion: v1\nkind: Service\n\nmetadata:\n  name: a\n".into()
                ),
                (1, Some(1), "  {kind: Node}\n\n".into()),
                (1, Some(2), "\nkind: X\n".into()),
            ]
        );
        let rest: Vec<_> = split(t)
            .unwrap()
            .into_iter()
            .filter(|p| p.part == Part::ListRest)
            .collect();
        assert_eq!(
            rest[0].raw,
            "apiVersion: v1\nitems:\nkind: List\nmetadata: {}\n"
        );
        // Indented sequences, as some tools write them.
        let t = "kind: List\nitems:\n  - kind: A\n    x: 1\n  - kind: B\n";
        assert_eq!(
            texts(t),
            vec![
                (1, Some(0), "kind: A\nx: 1\n".into()),
                (1, Some(1), "kind: B\n".into())
            ]
        );
    }

    #[test]
    fn unusual_texts_are_left_whole() {
        for t in [
            "{\"kind\": \"List\"}",
            "%YAML 1.2\n---\na: 1\n",
            "--- !tag\na: 1\n",
            "a: 1\n...\n",
            "kind: List\nitems: []\n",
            "kind: List\nitems:\nmetadata: {}\n",
            "kind: List\nitems:\n  - a: 1\n b: 2\n",
            "kind: List\nitems:\n- a\nitems:\n- b\n",
        ] {
            assert!(split(t).is_none(), "{t:?}");
        }
        // Not a list: the document stays one piece.
        assert_eq!(texts("- kind: List\n  items:\n  - a\n").len(), 1);
        assert_eq!(texts("kind: List\nitems:\n- a\nports:\n- b\n").len(), 1);
        assert_eq!(
            texts("kind: Service\nitems:\n- a\n"),
            vec![(1, None, "kind: Service\nitems:\n- a\n".into())]
        );
        assert_eq!(
            texts("items:\n- a\n"),
            vec![(1, None, "items:\n- a\n".into())]
        );
        // `----` is not a document marker.
        assert_eq!(texts("a: |\n  x\n----\n").len(), 1);
    }
}
