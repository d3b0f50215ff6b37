//! Human output: colors (on a terminal only), tables and trees.

use std::fmt::Write as _;

/// Colors, or none.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Paint {
    pub(crate) on: bool,
}

impl Paint {
    fn wrap(self, code: &str, text: &str) -> String {
        if self.on { format!("\x1b[{code}m{text}\x1b[0m") } else { text.to_owned() }
    }

    pub(crate) fn bold(self, text: &str) -> String {
        self.wrap("1", text)
    }

    pub(crate) fn green(self, text: &str) -> String {
        self.wrap("32", text)
    }

    pub(crate) fn red(self, text: &str) -> String {
        self.wrap("31", text)
    }

    pub(crate) fn yellow(self, text: &str) -> String {
        self.wrap("33", text)
    }

    pub(crate) fn dim(self, text: &str) -> String {
        self.wrap("2", text)
    }
}

/// The width of `text` on a terminal: its characters, color codes aside.
pub(crate) fn visible_len(text: &str) -> usize {
    let mut len = 0;
    let mut in_escape = false;
    for c in text.chars() {
        match (in_escape, c) {
            (false, '\x1b') => in_escape = true,
            (true, 'm') => in_escape = false,
            (true, _) => {}
            (false, _) => len += 1,
        }
    }
    len
}

/// A table: a header row, then rows, columns padded to the widest cell
/// (painted cells are measured without their color codes).
pub(crate) fn table(paint: Paint, header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(visible_len(cell));
            }
        }
    }
    let line = |cells: Vec<String>| -> String {
        let last = cells.len().saturating_sub(1);
        let mut text = String::new();
        for (i, cell) in cells.into_iter().enumerate() {
            let width = widths.get(i).copied().unwrap_or(0);
            if i == last {
                text.push_str(&cell);
            } else {
                let pad = width.saturating_sub(visible_len(&cell));
                let _ = write!(text, "{cell}{}  ", " ".repeat(pad));
            }
        }
        text.trim_end().to_owned()
    };
    let mut out = String::new();
    let head: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
    out.push_str(&paint.bold(&line(head)));
    out.push('\n');
    for row in rows {
        out.push_str(&line(row.clone()));
        out.push('\n');
    }
    out
}

/// A node of a tree: a label and children.
#[derive(Clone, Debug, Default)]
pub(crate) struct Node {
    pub(crate) label: String,
    pub(crate) children: Vec<Node>,
}

impl Node {
    pub(crate) fn new(label: impl Into<String>) -> Self {
        Node { label: label.into(), children: Vec::new() }
    }

    pub(crate) fn leaf(label: impl Into<String>) -> Self {
        Node::new(label)
    }

    pub(crate) fn push(&mut self, child: Node) {
        self.children.push(child);
    }

    /// The tree as text, with box-drawing branches.
    pub(crate) fn render(&self) -> String {
        let mut out = format!("{}\n", self.label);
        render_children(&self.children, "", &mut out);
        out
    }
}

fn render_children(children: &[Node], prefix: &str, out: &mut String) {
    let last = children.len().saturating_sub(1);
    for (i, child) in children.iter().enumerate() {
        let (branch, next) = if i == last { ("└── ", "    ") } else { ("├── ", "│   ") };
        let _ = writeln!(out, "{prefix}{branch}{}", child.label);
        render_children(&child.children, &format!("{prefix}{next}"), out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trees_draw_branches() {
        let mut root = Node::new("app");
        let mut a = Node::new("a");
        a.push(Node::leaf("1"));
        a.push(Node::leaf("2"));
        root.push(a);
        root.push(Node::leaf("b"));
        assert_eq!(root.render(), "app\n├── a\n│   ├── 1\n│   └── 2\n└── b\n");
    }

    #[test]
    fn tables_pad_columns_and_paint_only_when_on() {
        let rows = vec![vec!["x".to_owned(), "long value".to_owned()], vec!["longer".to_owned(), "v".to_owned()]];
        let text = table(Paint { on: false }, &["key", "value"], &rows);
        assert_eq!(text, "key     value\nx       long value\nlonger  v\n");
        assert!(table(Paint { on: true }, &["key"], &[]).contains("\x1b[1m"));
        let painted = vec![vec![Paint { on: true }.red("no"), "x".to_owned()], vec!["yes".to_owned(), "y".to_owned()]];
        assert_eq!(table(Paint { on: false }, &["a", "b"], &painted).lines().nth(2), Some("yes  y"));
        assert_eq!(visible_len(&Paint { on: true }.green("OK")), 2);
    }
}
