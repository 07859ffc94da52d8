//! Reads YAML text into a small tree that keeps, for every node, where it was written and
//! how a scalar was quoted. serde_yaml forgets both, and the loader needs them: positions
//! for error messages, quoting to decide whether an `${env:...}` expansion is re-read as a
//! number or kept as a string.

use std::collections::HashMap;

use saphyr_parser::{Event, Marker, Parser, ScalarStyle, ScanError, Span, Tag};

use crate::positions::Pos;

/// Deeper nesting than this is refused rather than risking the stack on hostile input.
const MAX_DEPTH: usize = 128;
/// More nodes than this (after expanding aliases) is refused: a few lines of nested
/// aliases can otherwise expand to billions of nodes.
const MAX_NODES: usize = 1_000_000;

#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub pos: Pos,
    pub kind: NodeKind,
}

#[derive(Debug, Clone)]
pub(crate) enum NodeKind {
    Scalar {
        text: String,
        style: ScalarStyle,
        tag: Option<Tag>,
    },
    Seq {
        items: Vec<Node>,
        tag: Option<Tag>,
    },
    Map {
        entries: Vec<(Node, Node)>,
        tag: Option<Tag>,
    },
}

/// A syntax error: where, and what the parser said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SyntaxError {
    pub pos: Pos,
    pub message: String,
}

fn pos(m: &Marker) -> Pos {
    Pos {
        line: m.line(),
        column: m.col() + 1,
    }
}

impl From<ScanError> for SyntaxError {
    fn from(e: ScanError) -> Self {
        Self {
            pos: pos(e.marker()),
            message: format!("invalid YAML: {}", e.info()),
        }
    }
}

/// Parses one YAML document; `None` for an empty file (or one holding only comments).
pub(crate) fn parse(text: &str) -> Result<Option<Node>, SyntaxError> {
    let mut reader = Reader {
        parser: Parser::new_from_str(text),
        anchors: HashMap::new(),
        last: Marker::new(0, 1, 0),
        nodes: 0,
    };
    let mut root = None;
    loop {
        let (event, span) = reader.next()?;
        match event {
            Event::StreamStart | Event::DocumentEnd | Event::Nothing => {}
            Event::StreamEnd => return Ok(root),
            Event::DocumentStart(_) => {
                if root.is_some() {
                    return Err(SyntaxError {
                        pos: pos(&span.start),
                        message: "a config file holds one YAML document; remove the second `---`"
                            .into(),
                    });
                }
                let (event, span) = reader.next()?;
                root = Some(reader.node(event, span, 0)?);
            }
            other => {
                return Err(SyntaxError {
                    pos: pos(&span.start),
                    message: format!("invalid YAML: unexpected {other:?}"),
                })
            }
        }
    }
}

struct Reader<'a> {
    parser: Parser<'a, saphyr_parser::StrInput<'a>>,
    /// Anchored nodes and their size in nodes.
    anchors: HashMap<usize, (Node, usize)>,
    /// Where the last event started, for an error at the end of input.
    last: Marker,
    /// Nodes produced so far, aliases counted at their full size.
    nodes: usize,
}

impl<'a> Reader<'a> {
    fn next(&mut self) -> Result<(Event<'a>, Span), SyntaxError> {
        match self.parser.next_event() {
            Some(Ok(pair)) => {
                self.last = pair.1.start;
                Ok(pair)
            }
            Some(Err(e)) => Err(e.into()),
            None => Err(SyntaxError {
                pos: pos(&self.last),
                message: "invalid YAML: unexpected end of input".into(),
            }),
        }
    }

    fn count(&mut self, n: usize, at: Pos) -> Result<(), SyntaxError> {
        self.nodes += n;
        if self.nodes > MAX_NODES {
            return Err(SyntaxError {
                pos: at,
                message: format!("more than {MAX_NODES} values after expanding aliases"),
            });
        }
        Ok(())
    }

    fn node(&mut self, event: Event<'a>, span: Span, depth: usize) -> Result<Node, SyntaxError> {
        let at = pos(&span.start);
        if depth > MAX_DEPTH {
            return Err(SyntaxError {
                pos: at,
                message: format!("nesting deeper than {MAX_DEPTH} levels"),
            });
        }
        let before = self.nodes;
        let (node, anchor) = match event {
            Event::Scalar(text, style, anchor, tag) => (
                Node {
                    pos: at,
                    kind: NodeKind::Scalar {
                        text: text.into_owned(),
                        style,
                        tag: tag.map(|t| t.into_owned()),
                    },
                },
                anchor,
            ),
            Event::SequenceStart(anchor, tag) => {
                let mut items = Vec::new();
                loop {
                    let (event, span) = self.next()?;
                    if event == Event::SequenceEnd {
                        break;
                    }
                    items.push(self.node(event, span, depth + 1)?);
                }
                let tag = tag.map(|t| t.into_owned());
                let kind = NodeKind::Seq { items, tag };
                (Node { pos: at, kind }, anchor)
            }
            Event::MappingStart(anchor, tag) => {
                let mut entries = Vec::new();
                loop {
                    let (event, span) = self.next()?;
                    if event == Event::MappingEnd {
                        break;
                    }
                    let key = self.node(event, span, depth + 1)?;
                    let (event, span) = self.next()?;
                    let value = self.node(event, span, depth + 1)?;
                    entries.push((key, value));
                }
                let tag = tag.map(|t| t.into_owned());
                let kind = NodeKind::Map { entries, tag };
                (Node { pos: at, kind }, anchor)
            }
            Event::Alias(id) => {
                let (target, size) = self.anchors.get(&id).cloned().ok_or(SyntaxError {
                    pos: at,
                    message: "invalid YAML: alias to an unknown anchor".into(),
                })?;
                self.count(size, at)?;
                return Ok(target);
            }
            other => {
                return Err(SyntaxError {
                    pos: at,
                    message: format!("invalid YAML: unexpected {other:?}"),
                })
            }
        };
        self.count(1, at)?;
        if anchor != 0 {
            self.anchors
                .insert(anchor, (node.clone(), self.nodes - before));
        }
        Ok(node)
    }
}
