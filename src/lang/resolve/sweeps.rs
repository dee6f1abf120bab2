//! Sweeps and families: the axes of a sweep, joining multi-values on shared axes, the
//! limit on instances, and instance names.

use super::*;

impl<'a> Resolver<'a> {
    pub(super) fn sweep(
        &mut self,
        v: &'a ast::Value,
        items: &'a [ast::Value],
        ty: &Type,
        cx: &Cx,
    ) -> Option<Multi<Value>> {
        let key = (v.span.file, v.span.start);
        if self.sweep_named_replicate(v, cx) {
            return None;
        }
        let cx = &Cx { replicable: false, ..cx.clone() };
        if items.len() > MAX_INSTANCES {
            self.too_many(items.len(), 1, v.span);
            return None;
        }
        let labels: Vec<String> = items.iter().map(label).collect();
        let mut first: HashMap<&str, usize> = HashMap::with_capacity(labels.len());
        for (i, l) in labels.iter().enumerate() {
            if let Some(&j) = first.get(l.as_str()) {
                self.diags.push(
                    Diagnostic::new(
                        Code::DuplicateSweepValue,
                        format!("`{l}` appears twice in this sweep"),
                        items[i].span,
                        "again here",
                    )
                    .with_label(items[j].span, "first here")
                    .with_help("each value of a sweep names an instance; remove the repeat"),
                );
                return None;
            }
            first.insert(l, i);
        }
        let mut out = Vec::new();
        let mut values = Vec::with_capacity(items.len());
        let mut ok = true;
        let axis = match self.axis_ids.get(&key) {
            Some(a) => *a,
            None => {
                let id = self.axes.len();
                let name = if cx.axis_name.is_empty() { "sweep".to_string() } else { cx.axis_name.clone() };
                self.axes.push(Axis {
                    qualified: format!("{}.{}", cx.owner, name),
                    name,
                    labels: labels.clone(),
                    values: Vec::new(),
                    pos: key,
                });
                self.axis_ids.insert(key, id);
                id
            }
        };
        for (i, item) in items.iter().enumerate() {
            match self.value(item, ty, cx) {
                Some(m) => {
                    let shown = match m.as_slice() {
                        [(_, x @ (Value::Int(_) | Value::Float(_) | Value::Bool(_) | Value::Str(_)))] => x.clone(),
                        _ => Value::Str(labels[i].clone()),
                    };
                    values.push(shown);
                    for (coord, x) in m {
                        if let Some(c) = merge(&coord, &vec![(axis, i)]) {
                            out.push((c, x));
                        }
                    }
                }
                None => ok = false,
            }
        }
        if ok && self.axes[axis].values.is_empty() {
            self.axes[axis].values = values;
        }
        ok.then_some(out)
    }

    /// Whether joining multi-values of these sizes could exceed [`MAX_INSTANCES`] (reported).
    pub(super) fn too_many(&mut self, a: usize, b: usize, at: Span) -> bool {
        if a.saturating_mul(b) <= MAX_INSTANCES {
            return false;
        }
        self.diags.push(
            Diagnostic::new(
                Code::TooLarge,
                format!("the sweeps here would make more than {MAX_INSTANCES} instances"),
                at,
                "too many combinations",
            )
            .with_help("sweep fewer values at once; every combination of sweeps is an instance"),
        );
        true
    }

    pub(super) fn instance_name(&self, decl: &str, coord: &Coord) -> String {
        if coord.is_empty() {
            return decl.to_string();
        }
        let mut parts: Vec<&(usize, usize)> = coord.iter().collect();
        parts.sort_by_key(|(a, _)| self.axes[*a].pos);
        let clash = |a: usize| parts.iter().filter(|(b, _)| self.axes[*b].name == self.axes[a].name).count() > 1;
        let shown: Vec<String> = parts
            .iter()
            .map(|(a, i)| {
                let axis = &self.axes[*a];
                let name = if clash(*a) { &axis.qualified } else { &axis.name };
                format!("{name}={}", axis.labels[*i])
            })
            .collect();
        format!("{decl}[{}]", shown.join(","))
    }

    pub(super) fn sweep_values(&self, coord: &Coord) -> Vec<(String, Value)> {
        let mut parts: Vec<&(usize, usize)> = coord.iter().collect();
        parts.sort_by_key(|(a, _)| self.axes[*a].pos);
        parts
            .iter()
            .map(|(a, i)| {
                let axis = &self.axes[*a];
                let v = axis.values.get(*i).cloned().unwrap_or_else(|| Value::Str(axis.labels[*i].clone()));
                (axis.name.clone(), v)
            })
            .collect()
    }
}

/// How a sweep value is shown in an instance name: as written (`2e-4`, `ddim`), strings
/// without quotes.
pub(super) fn label(v: &ast::Value) -> String {
    match &v.kind {
        ValueKind::Number { text, .. } => text.to_string(),
        ValueKind::Str(s) => s.clone(),
        ValueKind::Bool(b) => b.to_string(),
        ValueKind::Ident(id) => id.name.clone(),
        ValueKind::Inline { variant, block } => {
            let inner: Vec<String> =
                block.entries.iter().map(|e| format!("{}={}", e.key.name, label(&e.value))).collect();
            if inner.is_empty() {
                variant.name.clone()
            } else {
                format!("{}({})", variant.name, inner.join(","))
            }
        }
        ValueKind::List(items) => format!("[{}]", items.iter().map(label).collect::<Vec<_>>().join(",")),
        ValueKind::Sweep(items) => format!("sweep({})", items.iter().map(label).collect::<Vec<_>>().join(",")),
        ValueKind::Replicate(count) => format!("replicate({})", label(count)),
        ValueKind::Record(block) => {
            let inner: Vec<String> =
                block.entries.iter().map(|e| format!("{}={}", e.key.name, label(&e.value))).collect();
            format!("{{{}}}", inner.join(","))
        }
    }
}

/// Two coordinates agree on their shared axes: their union; otherwise none.
pub(super) fn merge(a: &Coord, b: &Coord) -> Option<Coord> {
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::with_capacity(a.len() + b.len());
    while i < a.len() && j < b.len() {
        match a[i].0.cmp(&b[j].0) {
            std::cmp::Ordering::Less => {
                out.push(a[i]);
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                out.push(b[j]);
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                if a[i].1 != b[j].1 {
                    return None;
                }
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
    Some(out)
}

/// Natural join of two multi-values on shared axes (product on the others).
pub(super) fn join<A, B, C>(a: &Multi<A>, b: &Multi<B>, mut f: impl FnMut(&A, &B) -> C) -> Multi<C> {
    let mut out = Vec::with_capacity(a.len().max(b.len()));
    for (ca, x) in a {
        for (cb, y) in b {
            if let Some(c) = merge(ca, cb) {
                out.push((c, f(x, y)));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_zips_shared_axes_and_multiplies_others() {
        let a: Multi<i32> = vec![(vec![(0, 0)], 1), (vec![(0, 1)], 2)];
        let b: Multi<i32> = vec![(vec![(0, 0)], 10), (vec![(0, 1)], 20)];
        let zipped = join(&a, &b, |x, y| x + y);
        assert_eq!(zipped.iter().map(|(_, v)| *v).collect::<Vec<_>>(), vec![11, 22]);
        let c: Multi<i32> = vec![(vec![(1, 0)], 100), (vec![(1, 1)], 200), (vec![(1, 2)], 300)];
        assert_eq!(join(&a, &c, |x, y| x + y).len(), 6);
    }
}
