//! Repeated sub-expressions evaluated once per scope. Rules of one mapping often read the same
//! value several times (`decimal(item.Quantity)` in a line's quantity, its `when` and its total);
//! at load time [`share`] wraps every computation that occurs more than once among a scope's
//! rules in a [`Node::Memo`] slot (literals and plain paths are as cheap to read again), and
//! during evaluation the first use stores its value in the scope's [`Memo`] and later ones read
//! it. Expressions are pure (lookups and cross-references are data in the scope), so the result
//! is the same; an error is not stored, and the rule that meets it first reports it, as before.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use super::parser::{Expr, Node};
use super::value::Val;

/// The values of one scope's shared sub-expressions, by slot. Each value carries the scope's
/// generation it was stored in; a new scope only counts one up (a value of an earlier scope is
/// never read, and is dropped when its slot is stored again).
#[derive(Debug, Default)]
pub struct Memo<'a> {
    slots: RefCell<Vec<(u32, Option<Val<'a>>)>>,
    generation: Cell<u32>,
}

impl<'a> Memo<'a> {
    pub fn new(slots: usize) -> Memo<'a> {
        Memo {
            slots: RefCell::new(vec![(0, None); slots]),
            generation: Cell::new(0),
        }
    }

    pub fn get(&self, slot: usize) -> Option<Val<'a>> {
        match self.slots.borrow().get(slot) {
            Some((generation, Some(value))) if *generation == self.generation.get() => {
                Some(value.duplicate())
            }
            _ => None,
        }
    }

    pub fn set(&self, slot: usize, value: Val<'a>) {
        if let Some(place) = self.slots.borrow_mut().get_mut(slot) {
            *place = (self.generation.get(), Some(value));
        }
    }

    /// Forgets every value (the next line of `lines` is a new scope).
    pub fn clear(&self) {
        let next = self.generation.get().wrapping_add(1);
        if next == 0 {
            // After 2^32 scopes a generation would come back: forget for real.
            self.slots.borrow_mut().fill((0, None));
        }
        self.generation.set(next);
    }
}

/// Wraps the sub-expressions that occur more than once among `exprs` (compared by shape, not by
/// text position) in memo slots; returns how many slots the scope needs.
pub fn share<'e>(exprs: impl IntoIterator<Item = &'e mut Expr>) -> usize {
    let mut exprs: Vec<&mut Expr> = exprs.into_iter().collect();
    let mut counts: HashMap<String, usize> = HashMap::new();
    for expr in &exprs {
        expr.visit(&mut |e| {
            if worth_sharing(e) {
                *counts.entry(e.shape()).or_default() += 1;
            }
        });
    }
    let mut slots: HashMap<String, usize> = HashMap::new();
    for expr in &mut exprs {
        wrap(expr, &counts, &mut slots);
    }
    slots.len()
}

/// Computations on the event; literals, `$`, `item` and paths straight down from them are as
/// cheap to read again as a slot (most such paths are found once per scope: slots.rs).
fn worth_sharing(expr: &Expr) -> bool {
    match &expr.node {
        Node::Null | Node::Bool(_) | Node::Num(_) | Node::Str(_) | Node::Root | Node::Item => false,
        Node::Path(base, _) => !matches!(base.node, Node::Root | Node::Item),
        _ => true,
    }
}

fn wrap(expr: &mut Expr, counts: &HashMap<String, usize>, slots: &mut HashMap<String, usize>) {
    expr.children_mut()
        .into_iter()
        .for_each(|child| wrap(child, counts, slots));
    if !worth_sharing(expr) {
        return;
    }
    let shape = expr.shape();
    if counts.get(&shape).is_some_and(|n| *n > 1) {
        let next = slots.len();
        let slot = *slots.entry(shape).or_insert(next);
        let span = expr.span;
        let inner = std::mem::replace(&mut expr.node, Node::Null);
        expr.node = Node::Memo(slot, Box::new(Expr { node: inner, span }));
    }
}
