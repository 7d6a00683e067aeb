//! YAML text → a small tree of nodes that remember where they were written.
//!
//! Why not a serde deserializer: envoyproxy/ratelimit files are small, and what
//! matters is the error a user sees — every node keeps its line and column so
//! validation (in `load`) can name the place of *each* problem, not only the first
//! one serde would stop at. Why our own builder over saphyr-parser's events: the
//! parser is iterative, and by building the tree ourselves we refuse a nesting
//! bomb at [`MAX_DEPTH`] before any recursive code (validation, `Drop`) sees it,
//! and bound what aliases may expand to ([`MAX_NODES`]).

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle};

/// Deepest nesting of lists and mappings accepted. Real configs use well under
/// 20 (each descriptor level costs two: its list and its mapping).
pub(super) const MAX_DEPTH: usize = 64;
/// Largest config text accepted.
pub(super) const MAX_BYTES: usize = 16 << 20;
/// Most nodes one document may hold once aliases are expanded (a "billion laughs"
/// document is refused here instead of exhausting memory).
pub(super) const MAX_NODES: usize = 1_000_000;

/// A place in the text: 1-based line and column (columns count characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct Pos {
    pub line: usize,
    pub col: usize,
}

#[derive(Debug, Clone)]
pub(super) struct Node {
    pub pos: Pos,
    pub kind: Kind,
}

#[derive(Debug, Clone)]
pub(super) enum Kind {
    /// `plain` is false for quoted and block scalars: only plain scalars can be
    /// numbers, booleans or null, as in YAML's core schema.
    Scalar {
        text: String,
        plain: bool,
    },
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// Plain `~`, `null` or nothing at all: what Go's yaml.v2 leaves as a zero value.
    pub fn is_null(&self) -> bool {
        matches!(&self.kind, Kind::Scalar { text, plain: true }
            if matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL"))
    }

    /// What this node is, in words, for "expected …, found …" messages.
    pub fn what(&self) -> &'static str {
        match &self.kind {
            Kind::Scalar { .. } if self.is_null() => "nothing (null)",
            Kind::Scalar { .. } => "a single value",
            Kind::Seq(_) => "a list",
            Kind::Map(_) => "a mapping (`key: value` lines)",
        }
    }

    fn height(&self) -> usize {
        match &self.kind {
            Kind::Scalar { .. } => 0,
            Kind::Seq(items) => 1 + items.iter().map(Node::height).max().unwrap_or(0),
            Kind::Map(entries) => {
                1 + entries
                    .iter()
                    .map(|(k, v)| k.height().max(v.height()))
                    .max()
                    .unwrap_or(0)
            }
        }
    }

    fn count(&self) -> usize {
        match &self.kind {
            Kind::Scalar { .. } => 1,
            Kind::Seq(items) => 1 + items.iter().map(Node::count).sum::<usize>(),
            Kind::Map(entries) => {
                1 + entries
                    .iter()
                    .map(|(k, v)| k.count() + v.count())
                    .sum::<usize>()
            }
        }
    }
}

/// Why the text is not a YAML document we can read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ReadError {
    pub pos: Option<Pos>,
    pub message: String,
}

enum Frame {
    Seq {
        pos: Pos,
        anchor: usize,
        items: Vec<Node>,
    },
    Map {
        pos: Pos,
        anchor: usize,
        entries: Vec<(Node, Node)>,
        key: Option<Node>,
    },
}

struct Builder {
    stack: Vec<Frame>,
    root: Option<Node>,
    anchors: HashMap<usize, Node>,
    nodes: usize,
}

impl Builder {
    /// Counts `n` more nodes against [`MAX_NODES`].
    fn count(&mut self, n: usize, pos: Pos) -> Result<(), ReadError> {
        self.nodes = self.nodes.saturating_add(n);
        if self.nodes > MAX_NODES {
            return Err(too_many(pos));
        }
        Ok(())
    }

    /// Places a finished (and already counted) node in its parent.
    fn add(&mut self, node: Node, anchor: usize) -> Result<(), ReadError> {
        if anchor > 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map { entries, key, .. }) => match key.take() {
                None => *key = Some(node),
                Some(k) => entries.push((k, node)),
            },
        }
        Ok(())
    }

    fn open(&mut self, frame: Frame, pos: Pos) -> Result<(), ReadError> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(ReadError {
                pos: Some(pos),
                message: format!(
                    "lists and mappings are nested more than {MAX_DEPTH} deep; \
                     a rate limit config needs far fewer levels — flatten the descriptors"
                ),
            });
        }
        self.count(1, pos)?;
        self.stack.push(frame);
        Ok(())
    }

    fn close(&mut self) -> Result<(), ReadError> {
        let (node, anchor) = match self.stack.pop() {
            Some(Frame::Seq { pos, anchor, items }) => (
                Node {
                    pos,
                    kind: Kind::Seq(items),
                },
                anchor,
            ),
            Some(Frame::Map {
                pos,
                anchor,
                entries,
                ..
            }) => (
                Node {
                    pos,
                    kind: Kind::Map(entries),
                },
                anchor,
            ),
            // The parser balances starts and ends; an unbalanced end is ignored.
            None => return Ok(()),
        };
        self.add(node, anchor)
    }

    fn alias(&mut self, id: usize, pos: Pos) -> Result<(), ReadError> {
        let Some(target) = self.anchors.get(&id) else {
            return Err(ReadError {
                pos: Some(pos),
                message: "this alias (`*name`) refers to no anchor (`&name`) defined before it"
                    .to_owned(),
            });
        };
        if self.stack.len() + target.height() > MAX_DEPTH {
            return Err(ReadError {
                pos: Some(pos),
                message: format!(
                    "this alias expands to lists and mappings nested more than {MAX_DEPTH} deep"
                ),
            });
        }
        let mut node = target.clone();
        node.pos = pos;
        self.count(node.count(), pos)?;
        self.add(node, 0)
    }
}

fn too_many(pos: Pos) -> ReadError {
    ReadError {
        pos: Some(pos),
        message: format!(
            "the document holds more than {MAX_NODES} values (counting what aliases expand to); \
             a rate limit config is far smaller — check for aliases that repeat each other"
        ),
    }
}

/// Reads one YAML document. `Ok(None)`: the text holds no document (empty or
/// only comments).
pub(super) fn read(text: &str) -> Result<Option<Node>, ReadError> {
    if text.len() > MAX_BYTES {
        return Err(ReadError {
            pos: None,
            message: format!(
                "the file is {} bytes; the largest config accepted is {MAX_BYTES} bytes",
                text.len()
            ),
        });
    }
    let mut builder = Builder {
        stack: Vec::new(),
        root: None,
        anchors: HashMap::new(),
        nodes: 0,
    };
    let mut documents = 0usize;
    for event in Parser::new_from_str(text) {
        let (event, span) = event.map_err(|e| ReadError {
            pos: Some(Pos {
                line: e.marker().line(),
                col: e.marker().col() + 1,
            }),
            message: format!("this is not valid YAML: {}", e.info()),
        })?;
        let pos = Pos {
            line: span.start.line(),
            col: span.start.col() + 1,
        };
        match event {
            Event::DocumentStart(_) => {
                documents += 1;
                if documents > 1 {
                    return Err(ReadError {
                        pos: Some(pos),
                        message: "a second YAML document (after `---`) starts here; \
                                  put each domain in a file of its own"
                            .to_owned(),
                    });
                }
            }
            Event::Scalar(value, style, anchor, _tag) => {
                builder.count(1, pos)?;
                builder.add(
                    Node {
                        pos,
                        kind: Kind::Scalar {
                            text: value.into_owned(),
                            plain: style == ScalarStyle::Plain,
                        },
                    },
                    anchor,
                )?;
            }
            Event::SequenceStart(anchor, _tag) => builder.open(
                Frame::Seq {
                    pos,
                    anchor,
                    items: Vec::new(),
                },
                pos,
            )?,
            Event::MappingStart(anchor, _tag) => builder.open(
                Frame::Map {
                    pos,
                    anchor,
                    entries: Vec::new(),
                    key: None,
                },
                pos,
            )?,
            Event::SequenceEnd | Event::MappingEnd => builder.close()?,
            Event::Alias(id) => builder.alias(id, pos)?,
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => {}
        }
    }
    Ok(builder.root)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_positions() {
        let node = read("a: 1\nb:\n  - x\n").unwrap().unwrap();
        let Kind::Map(entries) = node.kind else {
            panic!("not a map")
        };
        assert_eq!(entries[1].0.pos, Pos { line: 2, col: 1 });
        let Kind::Seq(items) = &entries[1].1.kind else {
            panic!("not a seq")
        };
        assert_eq!(items[0].pos, Pos { line: 3, col: 5 });
    }

    #[test]
    fn empty_text_is_no_document() {
        assert!(read("# only a comment\n").unwrap().is_none());
    }

    #[test]
    fn refuses_deep_flow_nesting() {
        let text = "[".repeat(100_000);
        assert!(read(&text).is_err());
    }

    #[test]
    fn refuses_deep_block_nesting() {
        let mut text = String::new();
        for i in 0..200 {
            text.push_str(&" ".repeat(i));
            text.push_str("k:\n");
        }
        let err = read(&text).unwrap_err();
        assert!(err.message.contains("nested more than 64"), "{err:?}");
    }

    #[test]
    fn refuses_alias_bombs() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let p = i - 1;
            text.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let err = read(&text).unwrap_err();
        assert!(err.message.contains("more than"), "{err:?}");
    }

    #[test]
    fn expands_aliases() {
        let node = read("a: &x {k: v}\nb: *x\n").unwrap().unwrap();
        let Kind::Map(entries) = node.kind else {
            panic!("not a map")
        };
        assert!(matches!(entries[1].1.kind, Kind::Map(_)));
        assert_eq!(entries[1].1.pos.line, 2);
    }

    #[test]
    fn refuses_two_documents() {
        let err = read("a: 1\n---\nb: 2\n").unwrap_err();
        assert!(err.message.contains("second YAML document"), "{err:?}");
    }
}
