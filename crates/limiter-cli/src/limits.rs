//! `limiter limits`, `check` and `clear`: the limits of routes, and one
//! client's counters in them.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use limiter::engine::{DefaultsRule, GroupInfo, KeyedLimit, LimitInfo, LimitTable, Origin, RouteInfo};
use limiter::{Clock, LimitState, RateLimit, RequestInfo, SystemClock};
use serde_json::{Value, json};

use crate::args::{ClearArgs, LimitsArgs, Target};
use crate::output::{Node, Paint, table};
use crate::session::{Io, Session};
use crate::{EXIT_NO, EXIT_OK};

/// Methods whose buckets `clear` forgets when no `--method` is given.
const METHODS: [&str; 7] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

/// The route `name` names: a declared route by name or path, or (standalone,
/// or a path pattern) a route the limiter was not told about.
fn find_route<R: RequestInfo + Send + Sync + 'static>(
    session: &Session<'_, R>,
    table: &LimitTable,
    name: &str,
) -> Result<RouteInfo, String> {
    let declared = table.routes.iter().any(|r| r.name.as_deref() == Some(name) || r.path == name);
    if declared || !session.mounted || name.starts_with('/') {
        return Ok(session.limiter.route_info(name));
    }
    let mut known: Vec<&str> = table.routes.iter().filter_map(|r| r.name.as_deref()).collect();
    known.dedup();
    Err(format!(
        "no route is named {name:?}: give a route name ({}) or a path pattern starting with /",
        known.join(", ")
    ))
}

/// One limit's notation with what else is declared about it.
fn describe(l: &LimitInfo, limit: Option<&RateLimit>, paint: Paint) -> String {
    let mut text = match limit {
        Some(limit) => limit.to_string(),
        None => "(computed per request)".to_owned(),
    };
    let mut notes: Vec<String> = Vec::new();
    if let Some(methods) = &l.methods {
        notes.push(methods.join(", "));
    }
    match &l.origin {
        Origin::Default => notes.push("default".to_owned()),
        Origin::Group(g) => notes.push(format!("group {g}")),
        _ => {}
    }
    if l.per_method {
        notes.push("per method".to_owned());
    }
    // Application limits are shared by nature: their heading says so.
    if l.shared && l.origin != Origin::Application {
        notes.push(format!("shared: {}", l.scope("")));
    }
    match l.cost {
        Some(1) => {}
        Some(n) => notes.push(format!("cost {n}")),
        None => notes.push("computed cost".to_owned()),
    }
    if l.exempt_when {
        notes.push("exempt when".to_owned());
    }
    if l.deduct_when {
        notes.push("deducted after the response".to_owned());
    }
    if l.own_key {
        notes.push("own key".to_owned());
    }
    if !notes.is_empty() {
        text.push_str(&format!(" ({})", notes.join(", ")));
    }
    if l.shadow {
        text.push_str(&format!(" {}", paint.yellow("[shadow]")));
    }
    text
}

/// One client's counters: their states once peeked.
struct Probe {
    key: String,
    method: String,
    prefix: Option<String>,
    states: HashMap<String, LimitState>,
    error: Option<String>,
}

impl Probe {
    /// Peeks every counter of `limits` for `key` in one storage call.
    async fn run<R: RequestInfo + Send + Sync + 'static>(
        session: &Session<'_, R>,
        key: &str,
        method: &str,
        limits: &[&LimitInfo],
    ) -> Probe {
        let prefix = session.limiter.key_prefix().map(str::to_owned);
        let mut keyed: Vec<KeyedLimit> = Vec::new();
        for l in limits {
            for k in l.keyed(prefix.as_deref(), key, method) {
                if !keyed.iter().any(|seen| seen.storage_key() == k.storage_key()) {
                    keyed.push(k);
                }
            }
        }
        let mut probe =
            Probe { key: key.to_owned(), method: method.to_owned(), prefix, states: HashMap::new(), error: None };
        let answer = match session.reachable() {
            Ok(()) => session.limiter.peek(&keyed).await.map_err(|e| e.to_string()),
            Err(why) => Err(why),
        };
        match answer {
            Ok(states) => {
                probe.states = keyed.iter().map(KeyedLimit::storage_key).zip(states).collect();
            }
            Err(e) => probe.error = Some(e),
        }
        probe
    }

    fn keyed(&self, l: &LimitInfo) -> Vec<KeyedLimit> {
        l.keyed(self.prefix.as_deref(), &self.key, &self.method)
    }

    fn state(&self, keyed: &KeyedLimit) -> Option<&LimitState> {
        self.states.get(&keyed.storage_key())
    }
}

fn resets_in(state: &LimitState) -> Duration {
    state.reset_at.saturating_duration_since(SystemClock.now())
}

/// `Pass (4 of 5 remaining)` or `Fail (0 of 5 remaining, resets in 42 s)`.
fn verdict(limit: &RateLimit, state: &LimitState, paint: Paint) -> String {
    if state.allowed {
        format!("{} ({} of {} remaining)", paint.green("Pass"), state.remaining, limit.amount())
    } else {
        let wait = resets_in(state).as_secs_f64().ceil();
        format!("{} ({} of {} remaining, resets in {wait} s)", paint.red("Fail"), state.remaining, limit.amount())
    }
}

/// The tree lines of one declaration: one per limit, with the client's
/// state when probed.
fn limit_nodes(l: &LimitInfo, probe: Option<&Probe>, paint: Paint) -> Vec<Node> {
    let mut nodes = declared_nodes(l, probe, paint);
    // Meta limits attached to this declaration count its breaches.
    nodes.extend(titled(paint.dim("meta limits on its breaches"), &l.meta, probe, paint));
    nodes
}

/// A node titled `title` over the tree lines of `limits`; none if there
/// are no limits.
fn titled(title: String, limits: &[LimitInfo], probe: Option<&Probe>, paint: Paint) -> Option<Node> {
    if limits.is_empty() {
        return None;
    }
    let mut node = Node::new(title);
    for l in limits {
        node.children.extend(limit_nodes(l, probe, paint));
    }
    Some(node)
}

/// The tree lines of one declaration's own limits.
fn declared_nodes(l: &LimitInfo, probe: Option<&Probe>, paint: Paint) -> Vec<Node> {
    let Some(limits) = &l.limits else { return vec![Node::leaf(describe(l, None, paint))] };
    let keyed = probe.map(|p| p.keyed(l)).unwrap_or_default();
    limits
        .iter()
        .enumerate()
        .map(|(i, limit)| {
            let mut label = describe(l, Some(limit), paint);
            if let Some(p) = probe {
                let state = keyed.get(i).and_then(|k| p.state(k));
                match (state, &p.error) {
                    (Some(state), _) => label.push_str(&format!(": {}", verdict(limit, state, paint))),
                    (None, Some(_)) => label.push_str(&format!(": {}", paint.red("Storage not available"))),
                    (None, None) => {}
                }
            }
            Node::leaf(label)
        })
        .collect()
}

fn route_label(route: &RouteInfo, paint: Paint) -> String {
    match &route.name {
        Some(name) if name != &route.path => format!("{}: {}", paint.bold(name), route.path),
        _ => paint.bold(&route.path),
    }
}

/// A route and the limits it counts for a request with `method` (all
/// methods when `None`); `alone`: the route is viewed by itself, so its
/// meta and application limits are shown under it rather than at the top.
fn route_node(route: &RouteInfo, table: &LimitTable, probe: Option<&Probe>, paint: Paint, alone: bool) -> Node {
    let mut node = Node::new(route_label(route, paint));
    if route.is_exempt() {
        node.push(Node::leaf(paint.dim("Exempt")));
        return node;
    }
    if alone {
        for (title, limits) in [("Meta limits", &route.meta), ("Application limits", &route.application)] {
            node.children.extend(titled(paint.dim(title), limits, probe, paint));
        }
    }
    for l in &route.own {
        node.children.extend(limit_nodes(l, probe, paint));
    }
    // Methods the route's own limits cover, when they replace the defaults
    // for those methods only; `None` when they cover every method.
    let covered: Option<Vec<&str>> = route.own.iter().try_fold(Vec::new(), |mut all, l| {
        all.extend(l.methods.as_ref()?.iter().map(String::as_str));
        Some(all)
    });
    let defaults = match (route.defaults_rule, probe) {
        (DefaultsRule::Always, _) => true,
        (DefaultsRule::UnlessOwnApply, Some(p)) => !route.own.iter().any(|l| l.applies_to_method(&p.method)),
        (DefaultsRule::UnlessOwnApply, None) => covered.is_some(),
        _ => false,
    };
    if defaults {
        for l in &route.defaults {
            let mut nodes = limit_nodes(l, probe, paint);
            if let (DefaultsRule::UnlessOwnApply, None, Some(covered)) = (route.defaults_rule, probe, &covered) {
                for n in &mut nodes {
                    n.label.push_str(&format!(" (methods other than {})", covered.join(", ")));
                }
            }
            node.children.extend(nodes);
        }
    }
    if !table.application.is_empty() && route.application.is_empty() {
        node.push(Node::leaf(paint.dim("Exempt from application limits")));
    }
    if !table.meta.is_empty() && route.meta.is_empty() {
        node.push(Node::leaf(paint.dim("Exempt from meta limits")));
    }
    if node.children.is_empty() {
        node.push(Node::leaf(paint.dim("No limits")));
    }
    node
}

fn limit_json(l: &LimitInfo, probe: Option<&Probe>) -> Value {
    let origin = match &l.origin {
        Origin::Application => "application".to_owned(),
        Origin::Default => "default".to_owned(),
        Origin::Meta => "meta".to_owned(),
        Origin::Route => "route".to_owned(),
        Origin::Group(g) => format!("group:{g}"),
        Origin::Fallback => "fallback".to_owned(),
        _ => "other".to_owned(),
    };
    let mut doc = json!({
        "limits": l.limits.as_ref().map(|ls| ls.iter().map(ToString::to_string).collect::<Vec<_>>()),
        "origin": origin,
        "methods": l.methods,
        "per_method": l.per_method,
        "shared": l.shared,
        "cost": l.cost,
        "exempt_when": l.exempt_when,
        "deduct_when": l.deduct_when,
        "shadow": l.shadow,
        "meta": l.meta.iter().map(|m| limit_json(m, probe)).collect::<Vec<_>>(),
    });
    if let Some(p) = probe {
        let states: Vec<Value> = p.keyed(l).iter().map(|k| counter_json(k, p.state(k))).collect();
        doc = with(doc, "counters", json!(states));
    }
    doc
}

/// `doc` (an object) with one more field.
fn with(mut doc: Value, name: &str, value: Value) -> Value {
    if let Some(fields) = doc.as_object_mut() {
        fields.insert(name.to_owned(), value);
    }
    doc
}

fn counter_json(k: &KeyedLimit, state: Option<&LimitState>) -> Value {
    json!({
        "limit": k.limit.to_string(),
        "storage_key": k.storage_key(),
        "allowed": state.map(|s| s.allowed),
        "remaining": state.map(|s| s.remaining),
        "reset_at": state.map(|s| s.reset_at.as_secs()),
    })
}

fn route_json(route: &RouteInfo, probe: Option<&Probe>) -> Value {
    let defaults = match route.defaults_rule {
        DefaultsRule::Always => "always",
        DefaultsRule::UnlessOwnApply => "for methods without own limits",
        DefaultsRule::Never => "never",
        _ => "other",
    };
    json!({
        "name": route.name,
        "path": route.path,
        "groups": route.groups,
        "exempt": route.is_exempt(),
        "application": !route.application.is_empty(),
        "meta": !route.meta.is_empty(),
        "defaults": defaults,
        "limits": route.own.iter().map(|l| limit_json(l, probe)).collect::<Vec<_>>(),
        "default_limits": route.defaults.iter().map(|l| limit_json(l, probe)).collect::<Vec<_>>(),
    })
}

/// One view of `limiter limits`.
async fn limits_view<R: RequestInfo + Send + Sync + 'static>(
    session: &Session<'_, R>,
    io: &Io<'_>,
    args: &LimitsArgs,
) -> Result<(String, Option<String>), String> {
    let paint = io.paint;
    let table = session.limiter.limit_table();
    let routes = match &args.route {
        Some(name) => vec![find_route(session, &table, name)?],
        None => table.routes.clone(),
    };
    let probe = match &args.key {
        Some(key) => {
            let mut shown: Vec<&LimitInfo> = Vec::new();
            if args.route.is_none() {
                shown.extend(table.meta.iter().chain(&table.application));
            }
            for r in &routes {
                shown.extend(r.own.iter().chain(&r.defaults).chain(&r.meta).chain(&r.application));
            }
            let attached: Vec<&LimitInfo> = shown.iter().flat_map(|l| &l.meta).collect();
            shown.extend(attached);
            Some(Probe::run(session, key, &args.method, &shown).await)
        }
        None => None,
    };
    let probe = probe.as_ref();
    if io.json {
        let groups: Vec<Value> = table
            .groups
            .iter()
            .map(|g| {
                json!({
                    "name": g.name,
                    "prefix": g.prefix,
                    "exempt": g.exempt.is_some(),
                    "limits": g.limits.iter().map(|l| limit_json(l, None)).collect::<Vec<_>>(),
                })
            })
            .collect();
        let doc = json!({
            "key": args.key,
            "method": args.key.as_ref().map(|_| &args.method),
            "storage_error": probe.and_then(|p| p.error.clone()),
            "key_prefix": table.key_prefix,
            "shadow": table.shadow,
            "meta": table.meta.iter().map(|l| limit_json(l, probe)).collect::<Vec<_>>(),
            "application": table.application.iter().map(|l| limit_json(l, probe)).collect::<Vec<_>>(),
            "defaults": table.defaults.iter().map(|l| limit_json(l, None)).collect::<Vec<_>>(),
            "groups": groups,
            "routes": routes.iter().map(|r| route_json(r, probe)).collect::<Vec<_>>(),
        });
        return Ok((format!("{doc}\n"), probe.and_then(|p| p.error.clone())));
    }
    let mut trees: Vec<Node> = Vec::new();
    if args.route.is_none() {
        for (title, limits) in [("Meta limits", &table.meta), ("Application limits", &table.application)] {
            trees.extend(titled(paint.bold(title), limits, probe, paint));
        }
    }
    // Routes outside any group under the app; the others under their innermost group.
    let mut by_group: BTreeMap<Option<&str>, Vec<&RouteInfo>> = BTreeMap::new();
    for r in &routes {
        by_group.entry(r.groups.first().map(String::as_str)).or_default().push(r);
    }
    if let Some(plain) = by_group.get(&None) {
        let mut node = Node::new(paint.bold("Routes"));
        for r in plain {
            node.push(route_node(r, &table, probe, paint, args.route.is_some()));
        }
        trees.push(node);
    }
    for GroupInfo { name, prefix, exempt, limits, .. } in &table.groups {
        let members = by_group.get(&Some(name.as_str()));
        if args.route.is_some() && members.is_none() {
            continue;
        }
        let mut node = Node::new(format!("{} {}", paint.bold(&format!("Group {name}:")), prefix));
        if exempt.is_some() {
            node.push(Node::leaf(paint.dim(&format!("Exemption: {exempt:?}").replace("Some(", "").replace(')', ""))));
        }
        let mut others = Node::new(format!("{}/* {}", prefix.trim_end_matches('/'), paint.dim("(other routes)")));
        for l in limits {
            others.children.extend(limit_nodes(l, None, paint));
        }
        if others.children.is_empty() {
            others.push(Node::leaf(paint.dim("the default limits")));
        }
        for r in members.into_iter().flatten() {
            node.push(route_node(r, &table, probe, paint, args.route.is_some()));
        }
        node.push(others);
        trees.push(node);
    }
    if args.route.is_none() && !table.defaults.is_empty() {
        let mut node = Node::new(paint.bold("Default limits (each route counts its own)"));
        for l in &table.defaults {
            node.children.extend(limit_nodes(l, None, paint));
        }
        trees.push(node);
    }
    let mut text: String = trees.iter().map(Node::render).collect();
    if let Some(p) = probe {
        let head = format!("Key {:?}, method {}", p.key, p.method);
        text = format!("{}\n{text}", paint.bold(&head));
        if let Some(e) = &p.error {
            text.push_str(&format!("{}\n", paint.red(&format!("Storage not available: {e}"))));
        }
    }
    if routes.is_empty() && !session.mounted {
        text.push_str(
            &paint
                .dim("This limiter knows no routes: mount limiter_cli::run in the app to see them, or give --route.\n"),
        );
    }
    Ok((text, probe.and_then(|p| p.error.clone())))
}

/// `limiter limits`.
pub(crate) async fn limits<R: RequestInfo + Send + Sync + 'static>(
    session: &Session<'_, R>,
    io: &mut Io<'_>,
    args: &LimitsArgs,
) -> Result<u8, String> {
    if !args.watch {
        let (view, storage_error) = limits_view(session, io, args).await?;
        io.print(&view)?;
        // The view shows what it could; the storage's failure is still an error.
        return match storage_error {
            Some(e) => Err(format!("the storage did not answer: {e}")),
            None => Ok(EXIT_OK),
        };
    }
    let interval = Duration::try_from_secs_f64(args.interval)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("--interval {} is not a number of seconds above zero", args.interval))?;
    let mut shown = 0u64;
    loop {
        // A watch goes on through a storage outage: each view says it.
        let (view, _) = limits_view(session, io, args).await?;
        // On a terminal each view replaces the last; elsewhere views follow
        // each other (one JSON document per line with --json).
        let clear = if io.terminal && !io.json { "\x1b[2J\x1b[H" } else { "" };
        io.print(&format!("{clear}{view}"))?;
        shown += 1;
        if args.count.is_some_and(|n| shown >= n) {
            return Ok(EXIT_OK);
        }
        tokio::time::sleep(interval).await;
    }
}

/// The limits `target` names, in evaluation order, with the route each is on.
fn targeted<'t>(
    table: &'t LimitTable,
    route: Option<&'t RouteInfo>,
    method: &str,
) -> Vec<(Option<&'t RouteInfo>, &'t LimitInfo)> {
    match route {
        Some(r) => r.applicable(method).into_iter().map(|l| (Some(r), l)).collect(),
        None => {
            let mut all: Vec<(Option<&RouteInfo>, &LimitInfo)> =
                table.meta.iter().chain(&table.application).map(|l| (None, l)).collect();
            for r in &table.routes {
                // The app-wide meta and application limits are listed once,
                // above; meta limits attached to a route's limits stay.
                let app_wide = |l: &LimitInfo| r.meta.iter().chain(&r.application).any(|g| std::ptr::eq(g, l));
                all.extend(r.applicable(method).into_iter().filter(|l| !app_wide(l)).map(|l| (Some(r), l)));
            }
            all
        }
    }
}

/// `limiter check`.
pub(crate) async fn check<R: RequestInfo + Send + Sync + 'static>(
    session: &Session<'_, R>,
    io: &mut Io<'_>,
    target: &Target,
) -> Result<u8, String> {
    session.reachable()?;
    let table = session.limiter.limit_table();
    let route = target.route.as_deref().map(|r| find_route(session, &table, r)).transpose()?;
    let method = target.method.as_deref().unwrap_or("GET").to_ascii_uppercase();
    let limits = targeted(&table, route.as_ref(), &method);
    let decls: Vec<&LimitInfo> = limits.iter().map(|(_, l)| *l).collect();
    let probe = Probe::run(session, &target.key, &method, &decls).await;
    if let Some(e) = &probe.error {
        return Err(format!("the storage failed: {e}"));
    }
    let mut refused = false;
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut docs: Vec<Value> = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    for (r, l) in &limits {
        for k in probe.keyed(l) {
            let storage_key = k.storage_key();
            if seen.contains(&storage_key) {
                continue;
            }
            seen.push(storage_key.clone());
            let Some(state) = probe.state(&k) else { continue };
            refused |= !state.allowed && !l.shadow;
            let place = match (r, &l.origin) {
                (Some(r), origin) if !matches!(origin, Origin::Meta | Origin::Application) => r.endpoint().to_owned(),
                _ => l.scope(&method),
            };
            rows.push(vec![
                place.clone(),
                describe(l, Some(&k.limit), io.paint),
                verdict(&k.limit, state, io.paint),
                storage_key.clone(),
            ]);
            let doc = with(counter_json(&k, Some(state)), "route", json!(place));
            docs.push(with(doc, "shadow", json!(l.shadow)));
        }
    }
    if io.json {
        io.print_json(&json!({
            "key": target.key,
            "route": route.as_ref().map(RouteInfo::endpoint),
            "method": method,
            "allowed": !refused,
            "counters": docs,
        }))?;
    } else {
        let mut text = table_text(io.paint, &rows);
        let summary = if refused {
            io.paint.red(&format!("Key {:?} would be refused.", target.key))
        } else {
            io.paint.green(&format!("Key {:?} would pass.", target.key))
        };
        text.push_str(&format!("{summary}\n"));
        if route.is_none() && !session.mounted && !table.defaults.is_empty() {
            text.push_str(&io.paint.dim("Default limits are counted per route: give --route to check them.\n"));
        }
        io.print(&text)?;
    }
    Ok(if refused { EXIT_NO } else { EXIT_OK })
}

fn table_text(paint: Paint, rows: &[Vec<String>]) -> String {
    if rows.is_empty() {
        return "No limits apply.\n".to_owned();
    }
    table(paint, &["route", "limit", "state", "storage key"], rows)
}

/// `limiter clear`.
pub(crate) async fn clear<R: RequestInfo + Send + Sync + 'static>(
    session: &Session<'_, R>,
    io: &mut Io<'_>,
    args: &ClearArgs,
) -> Result<u8, String> {
    let target = &args.target;
    if io.json && !args.yes {
        return Err("--json cannot ask for confirmation: add -y".to_owned());
    }
    session.reachable()?;
    let table = session.limiter.limit_table();
    let route = target.route.as_deref().map(|r| find_route(session, &table, r)).transpose()?;
    // Without --method, every method's bucket of per-method limits.
    let methods: Vec<String> = match &target.method {
        Some(method) => vec![method.to_ascii_uppercase()],
        None => METHODS.iter().map(|m| (*m).to_owned()).collect(),
    };
    let prefix = session.limiter.key_prefix();
    let mut keyed: Vec<KeyedLimit> = Vec::new();
    for method in &methods {
        for (_, l) in targeted(&table, route.as_ref(), method) {
            for k in l.keyed(prefix, &target.key, method) {
                if !keyed.iter().any(|seen| seen.storage_key() == k.storage_key()) {
                    keyed.push(k);
                }
            }
        }
    }
    if keyed.is_empty() {
        io.print("No counters to clear.\n")?;
        return Ok(EXIT_OK);
    }
    if !args.yes {
        let mut text = format!("{}\n", io.paint.bold(&format!("Counters of key {:?}:", target.key)));
        for k in &keyed {
            text.push_str(&format!("  {} {}\n", k.limit, io.paint.dim(&k.storage_key())));
        }
        text.push_str(&format!("Clear these {} counters? [y/N] ", keyed.len()));
        io.print(&text)?;
        let mut answer = String::new();
        io.input.read_line(&mut answer).map_err(|e| format!("cannot read the answer: {e}"))?;
        if !io.terminal {
            // The answer was not typed: end the prompt's line ourselves.
            io.print("\n")?;
        }
        if !matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
            io.print("Nothing cleared.\n")?;
            return Ok(EXIT_NO);
        }
    }
    session.limiter.clear(&keyed).await.map_err(|e| format!("the storage failed: {e}"))?;
    if io.json {
        let cleared: Vec<String> = keyed.iter().map(KeyedLimit::storage_key).collect();
        io.print_json(&json!({ "key": target.key, "cleared": cleared }))?;
    } else {
        let mut node = Node::new(io.paint.bold(&format!("Key {:?}", target.key)));
        for k in &keyed {
            node.push(Node::leaf(format!(
                "{} {}: {}",
                k.limit,
                io.paint.dim(&k.storage_key()),
                io.paint.green("Cleared")
            )));
        }
        io.print(&node.render())?;
    }
    Ok(EXIT_OK)
}
