//! The event's members a mapping reads, found once per scope instead of once per rule.
//!
//! Rules read `$.data.Name`, `$.data.Amount`, `item.Quantity`…: each path would search the same
//! object again. At load time [`Slots::assign`] gives every member a mapping reads under `$.data`
//! (or whichever first step most of its `$` paths share) and under `item` a place in a sorted list
//! of names, and turns those paths into [`Node::Slot`]. When a scope is made, [`Table::fill`]
//! finds all of them in one pass over the object (its members come in name order, so the two
//! sorted lists are merged), and each rule reads its member by position. Where a scope has no
//! table filled (a condition checked alone), the path is walked as before: the value is the same.

use serde_json::Value;

use super::parser::{Expr, Node, Step};

/// A path turned into a read of a member found once per scope, then the rest of its steps.
#[derive(Debug, Clone)]
pub struct Slot {
    /// Read from the line's table (`item.…`), else from the event's.
    pub item: bool,
    pub index: usize,
    pub rest: Box<[Step]>,
    /// The path itself: walked where no table is filled, and named in shapes and visits.
    pub path: Expr,
}

/// The members one object's table holds: the steps to the object, then the sorted names.
#[derive(Debug, Clone, Default)]
pub struct Table {
    prefix: Box<[Step]>,
    names: Vec<String>,
}

/// The mapping's two tables: under `$` and under `item`.
#[derive(Debug, Clone, Default)]
pub struct Slots {
    pub root: Table,
    pub item: Table,
}

impl Slots {
    /// Turns the paths of `exprs` into slots; `line` says which of them are a line's rules
    /// (only those can read `item`).
    pub fn assign<'e>(exprs: impl IntoIterator<Item = (&'e mut Expr, bool)>) -> Slots {
        let mut exprs: Vec<(&mut Expr, bool)> = exprs.into_iter().collect();
        let mut root_paths: Vec<Vec<String>> = Vec::new();
        for (expr, _) in &exprs {
            expr.visit(&mut |e| {
                if let Some((false, steps)) = plain_path(e) {
                    root_paths.push(steps);
                }
            });
        }
        let prefix = common_first(&root_paths);
        let mut slots = Slots {
            root: Table {
                prefix: prefix.iter().map(|s| Step::Field(s.clone())).collect(),
                names: Vec::new(),
            },
            item: Table::default(),
        };
        for (expr, line) in &mut exprs {
            slots.collect(expr, *line);
        }
        slots.root.names.sort_unstable();
        slots.root.names.dedup();
        slots.item.names.sort_unstable();
        slots.item.names.dedup();
        for (expr, line) in &mut exprs {
            slots.rewrite(expr, *line);
        }
        slots
    }

    /// The table a path reads from and the member's name, if it can be a slot.
    fn place(&self, expr: &Expr, line: bool) -> Option<(bool, String, Box<[Step]>)> {
        let Node::Path(base, steps) = &expr.node else {
            return None;
        };
        let (item, skip) = match base.node {
            Node::Root => (false, self.root.prefix.len()),
            Node::Item if line => (true, 0),
            _ => return None,
        };
        if !item && !same_fields(&steps[..skip.min(steps.len())], &self.root.prefix) {
            return None;
        }
        match steps.get(skip) {
            Some(Step::Field(name)) => Some((item, name.clone(), steps[skip + 1..].into())),
            _ => None,
        }
    }

    fn collect(&mut self, expr: &Expr, line: bool) {
        expr.visit(&mut |e| {
            if let Some((item, name, _)) = self.place(e, line) {
                self.table_mut(item).names.push(name);
            }
        });
    }

    fn rewrite(&self, expr: &mut Expr, line: bool) {
        if let Some((item, name, rest)) = self.place(expr, line) {
            let table = if item { &self.item } else { &self.root };
            let index = table.names.binary_search(&name).expect("collected");
            let path = expr.clone();
            expr.node = Node::Slot(Box::new(Slot {
                item,
                index,
                rest,
                path,
            }));
            return;
        }
        for child in expr.children_mut() {
            self.rewrite(child, line);
        }
    }

    fn table_mut(&mut self, item: bool) -> &mut Table {
        if item { &mut self.item } else { &mut self.root }
    }
}

impl Table {
    /// Appends to `out` the members of the object at the table's prefix under `base`, by
    /// position in the table; `None` for a member that is absent (or no object there).
    pub fn fill<'a>(&self, base: Option<&'a Value>, out: &mut Vec<Option<&'a Value>>) {
        let start = out.len();
        out.resize(start + self.names.len(), None);
        let out = &mut out[start..];
        let mut at = base;
        for step in &self.prefix {
            at = match (at, step) {
                (Some(Value::Object(map)), Step::Field(name)) => map.get(name.as_str()),
                _ => None,
            };
        }
        let Some(Value::Object(map)) = at else {
            return;
        };
        // An object much larger than the list is searched per name; else the two sorted lists
        // are merged.
        if map.len() > 4 * self.names.len() {
            for (place, name) in out.iter_mut().zip(&self.names) {
                *place = map.get(name.as_str());
            }
            return;
        }
        let mut wanted = self.names.iter().zip(out).peekable();
        for (key, value) in map {
            while let Some((name, place)) = wanted.peek_mut() {
                match name.as_str().cmp(key.as_str()) {
                    std::cmp::Ordering::Less => {
                        wanted.next();
                    }
                    std::cmp::Ordering::Equal => {
                        **place = Some(value);
                        wanted.next();
                        break;
                    }
                    std::cmp::Ordering::Greater => break,
                }
            }
            if wanted.peek().is_none() {
                break;
            }
        }
    }

    /// How many members the table holds.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// A path from `$` or `item` by names only: (from `item`, the names).
fn plain_path(expr: &Expr) -> Option<(bool, Vec<String>)> {
    let Node::Path(base, steps) = &expr.node else {
        return None;
    };
    let item = match base.node {
        Node::Root => false,
        Node::Item => true,
        _ => return None,
    };
    let names = steps
        .iter()
        .map(|step| match step {
            Step::Field(name) => Some(name.clone()),
            Step::Index(_) => None,
        })
        .collect::<Option<Vec<String>>>()?;
    Some((item, names))
}

/// The first name most paths of two or more names share (`data` in `$.data.Id`): the table is
/// made for the object under it. None when no path has two names.
fn common_first(paths: &[Vec<String>]) -> Option<String> {
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for path in paths.iter().filter(|p| p.len() >= 2) {
        match counts.iter_mut().find(|(name, _)| *name == path[0]) {
            Some((_, n)) => *n += 1,
            None => counts.push((&path[0], 1)),
        }
    }
    counts
        .into_iter()
        .max_by_key(|(_, n)| *n)
        .map(|(name, _)| name.to_owned())
}

fn same_fields(steps: &[Step], prefix: &[Step]) -> bool {
    steps.len() == prefix.len()
        && steps.iter().zip(prefix).all(|pair| match pair {
            (Step::Field(a), Step::Field(b)) => a == b,
            _ => false,
        })
}
