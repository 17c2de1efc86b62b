//! The soak's plan: every generator, fault, kill and outage, and when, drawn from one seed
//! before the run starts, so that a failing run can be replayed with the same plan (the
//! operator's and the servers' own timing still differ from run to run).

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use report_sim::{Fault, FaultKind, ReportingApi, STORAGE_ENDPOINT};

/// What the plan is drawn for.
#[derive(Debug, Clone)]
pub struct PlanSettings {
    /// How long faults are made and generators created.
    pub chaos: Duration,
    pub generators_per_minute: f64,
    pub faults_per_minute: f64,
    /// The operator is killed after a pause drawn from this range, again and again.
    pub kill_every: (Duration, Duration),
    /// How long the object store stays down (once).
    pub store_outage: Duration,
}

/// The three namespaces: two that stay and one deleted with reports in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Ns {
    A,
    B,
    Doomed,
}

impl Ns {
    pub const ALL: [Ns; 3] = [Ns::A, Ns::B, Ns::Doomed];

    pub fn suffix(self) -> &'static str {
        match self {
            Ns::A => "a",
            Ns::B => "b",
            Ns::Doomed => "doomed",
        }
    }
}

/// What a generator asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// One report of one window, on any of the five APIs.
    Onetime(ReportingApi),
    /// Daily windows from `days` days ago (a backfill), then every day, by `cron` every
    /// minute: CMP or CONNECT.
    Periodic(ReportingApi, u32),
    /// SUPPLIER's fan-out: daily windows from `days` days ago for each of `orgs`
    /// organizations.
    FanOut { orgs: u32, days: u32 },
    /// An RDE template whose report files the platform makes (the soak runs its task).
    RdeMirror,
    /// A CMP ON_INVOICE generator; the soak issues one invoice for it.
    CmpInvoice,
}

impl Kind {
    /// The API the generator's backend is.
    pub fn api(self) -> ReportingApi {
        match self {
            Kind::Onetime(api) | Kind::Periodic(api, _) => api,
            Kind::FanOut { .. } => ReportingApi::Supplier,
            Kind::RdeMirror => ReportingApi::Rde,
            Kind::CmpInvoice => ReportingApi::Cmp,
        }
    }

    /// A short name for tables and generator names.
    pub fn label(self) -> String {
        let api = self.api().as_str().to_ascii_lowercase();
        match self {
            Kind::Onetime(_) => format!("{api}-once"),
            Kind::Periodic(..) => format!("{api}-daily"),
            Kind::FanOut { .. } => "supplier-fanout".into(),
            Kind::RdeMirror => "rde-mirror".into(),
            Kind::CmpInvoice => "cmp-invoice".into(),
        }
    }
}

/// One generator of the plan; `idx` makes its name and everything the backends see of it
/// unique, so that the simulators' counts per report tell each report apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GeneratorPlan {
    pub idx: usize,
    pub kind: Kind,
    pub ns: Ns,
    /// Its reports are copied into the namespace's ReportStore.
    pub stored: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Generator(GeneratorPlan),
    /// A fault injected into the simulators.
    Fault(Fault),
    /// SIGKILL of the operator (with two replicas: of the leader), started again at once.
    KillOperator,
    RestartApiServer,
    /// The object store stopped for this long.
    StopObjectStore(Duration),
    /// The doomed namespace deleted (once a report in it is in flight).
    DeleteNamespace,
    /// The RDE platform's task run for generator `idx`, for its `run`th window.
    RdeRun {
        idx: usize,
        run: u32,
    },
    /// A CMP invoice for generator `idx`.
    CmpInvoice {
        idx: usize,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    /// From the start of the run.
    pub at: Duration,
    pub event: Event,
}

/// ON_INVOICE generators per namespace at most: each lists CMP's reports every 21.6 s
/// forever, from the backend's budget of 20 calls a minute.
const INVOICE_GENERATORS_PER_NS: usize = 2;

/// Draws the plan of a run: sorted by time.
pub fn draw(seed: u64, s: &PlanSettings) -> Vec<Planned> {
    let mut rng = StdRng::seed_from_u64(seed);
    let chaos = s.chaos.as_secs_f64();
    let at = |f: f64| Duration::from_secs_f64(f.clamp(0.0, chaos));
    let mut plan = Vec::new();

    // The outages at fixed shares of the run, each somewhere in its share.
    let restarts = [rng.random_range(0.15..0.40), rng.random_range(0.60..0.85)];
    for r in restarts {
        plan.push(Planned {
            at: at(r * chaos),
            event: Event::RestartApiServer,
        });
    }
    plan.push(Planned {
        at: at(rng.random_range(0.35..0.55) * chaos),
        event: Event::StopObjectStore(s.store_outage),
    });
    let doomed_at = rng.random_range(0.55..0.70) * chaos;
    plan.push(Planned {
        at: at(doomed_at),
        event: Event::DeleteNamespace,
    });

    // Kills, every 20 to 90 s.
    let lo = s.kill_every.0.as_secs_f64();
    let hi = s.kill_every.1.as_secs_f64().max(lo);
    let mut t = rng.random_range(lo..=hi);
    while t < chaos {
        plan.push(Planned {
            at: at(t),
            event: Event::KillOperator,
        });
        t += rng.random_range(lo..=hi);
    }

    // Generators: one of each kind in each namespace at the start, then a steady stream.
    let mut generators = Vec::new();
    let mut invoices = [0usize; 3];
    for ns in Ns::ALL {
        for kind in [
            Kind::Onetime(ReportingApi::Rde),
            Kind::Onetime(ReportingApi::Cmp),
            Kind::Onetime(ReportingApi::Connect),
            Kind::Onetime(ReportingApi::Fusion),
            Kind::Onetime(ReportingApi::Supplier),
            Kind::Periodic(ReportingApi::Cmp, 2),
            Kind::Periodic(ReportingApi::Connect, 2),
            Kind::FanOut { orgs: 2, days: 2 },
            Kind::RdeMirror,
            Kind::CmpInvoice,
        ] {
            if kind == Kind::CmpInvoice {
                invoices[ns as usize] += 1;
            }
            let stored = rng.random_bool(0.5);
            generators.push((0.0, kind, ns, stored));
        }
    }
    let mut t = next_arrival(&mut rng, s.generators_per_minute);
    while t < chaos {
        let ns = if t < doomed_at {
            [Ns::A, Ns::B, Ns::Doomed][pick(&mut rng, &[2.0, 2.0, 1.0])]
        } else {
            [Ns::A, Ns::B][pick(&mut rng, &[1.0, 1.0])]
        };
        let kind = loop {
            let kind = stream_kind(&mut rng);
            if kind != Kind::CmpInvoice || invoices[ns as usize] < INVOICE_GENERATORS_PER_NS {
                break kind;
            }
        };
        if kind == Kind::CmpInvoice {
            invoices[ns as usize] += 1;
        }
        generators.push((t, kind, ns, rng.random_bool(0.5)));
        t += next_arrival(&mut rng, s.generators_per_minute);
    }
    // A burst in the doomed namespace just before it goes, so that reports are in flight.
    let burst = (doomed_at - 5.0).max(0.0);
    for api in ReportingApi::ALL {
        generators.push((burst, Kind::Onetime(api), Ns::Doomed, rng.random_bool(0.5)));
    }
    generators.push((burst, Kind::FanOut { orgs: 3, days: 2 }, Ns::Doomed, true));
    for (idx, (t, kind, ns, stored)) in generators.into_iter().enumerate() {
        plan.push(Planned {
            at: at(t),
            event: Event::Generator(GeneratorPlan {
                idx,
                kind,
                ns,
                stored,
            }),
        });
        // The platforms' own triggers for the mirrored kinds, within the run.
        match kind {
            Kind::RdeMirror => {
                for run in 1..=rng.random_range(1..=3u32) {
                    let when = t + rng.random_range(15.0..60.0) * f64::from(run);
                    if when < chaos {
                        plan.push(Planned {
                            at: at(when),
                            event: Event::RdeRun { idx, run },
                        });
                    }
                }
            }
            Kind::CmpInvoice => plan.push(Planned {
                at: at(t + rng.random_range(5.0..60.0)),
                event: Event::CmpInvoice { idx },
            }),
            _ => {}
        }
    }

    let mut t = next_arrival(&mut rng, s.faults_per_minute);
    while t < chaos {
        plan.push(Planned {
            at: at(t),
            event: Event::Fault(fault(&mut rng)),
        });
        t += next_arrival(&mut rng, s.faults_per_minute);
    }
    plan.sort_by_key(|p| p.at);
    plan
}

/// Seconds to the next event of a Poisson stream of `per_minute` (none when 0).
fn next_arrival(rng: &mut StdRng, per_minute: f64) -> f64 {
    if per_minute <= 0.0 {
        return f64::INFINITY;
    }
    let u: f64 = rng.random_range(f64::EPSILON..1.0);
    -u.ln() * 60.0 / per_minute
}

/// An index drawn by `weights`.
fn pick(rng: &mut StdRng, weights: &[f64]) -> usize {
    let total: f64 = weights.iter().sum();
    let mut roll = rng.random_range(0.0..total);
    for (i, w) in weights.iter().enumerate() {
        if roll < *w {
            return i;
        }
        roll -= w;
    }
    weights.len() - 1
}

fn stream_kind(rng: &mut StdRng) -> Kind {
    let kinds = [
        (Kind::Onetime(ReportingApi::Rde), 1.0),
        (Kind::Onetime(ReportingApi::Cmp), 1.0),
        (Kind::Onetime(ReportingApi::Connect), 1.5),
        (Kind::Onetime(ReportingApi::Fusion), 1.0),
        (Kind::Onetime(ReportingApi::Supplier), 1.0),
        (Kind::Periodic(ReportingApi::Cmp, 0), 0.7),
        (Kind::Periodic(ReportingApi::Connect, 0), 1.0),
        (Kind::FanOut { orgs: 0, days: 0 }, 1.0),
        (Kind::RdeMirror, 0.7),
        (Kind::CmpInvoice, 0.3),
    ];
    let weights: Vec<f64> = kinds.iter().map(|(_, w)| *w).collect();
    match kinds[pick(rng, &weights)].0 {
        Kind::Periodic(api, _) => Kind::Periodic(api, rng.random_range(1..=3)),
        Kind::FanOut { .. } => Kind::FanOut {
            orgs: rng.random_range(1..=3),
            days: rng.random_range(1..=2),
        },
        other => other,
    }
}

/// The endpoints of each API (`report_sim`'s names) a fault may hit.
fn endpoints(api: ReportingApi) -> &'static [&'static str] {
    match api {
        ReportingApi::Rde => &["create", "lookup", "get", "reportFiles", "delete"],
        ReportingApi::Cmp => &["token", "list", "create", "get"],
        ReportingApi::Connect => &["list", "create", "get", "delete", "download"],
        ReportingApi::Fusion => &["login", "license"],
        ReportingApi::Supplier => &["generate", "get", "list", "link", "token"],
    }
}

/// The endpoint that makes a report (or an RDE template).
fn create_endpoint(api: ReportingApi) -> &'static str {
    match api {
        ReportingApi::Supplier => "generate",
        ReportingApi::Fusion => "license",
        _ => "create",
    }
}

/// One fault: 5xx, a 429 burst with `Retry-After`, a lost answer after a create, a timeout,
/// or a download cut off midway.
fn fault(rng: &mut StdRng) -> Fault {
    let api = ReportingApi::ALL[rng.random_range(0..ReportingApi::ALL.len())];
    let any = |rng: &mut StdRng| {
        let e = endpoints(api);
        e[rng.random_range(0..e.len())]
    };
    match pick(rng, &[3.0, 2.0, 2.0, 1.0, 2.0]) {
        0 => {
            let endpoint = any(rng);
            let status = [500, 502, 503][rng.random_range(0..3)];
            Fault::new(api, endpoint, FaultKind::ServerError, rng.random_range(1..=4)).with_status(status)
        }
        1 => Fault::new(api, "*", FaultKind::TooManyRequests, rng.random_range(3..=10))
            .with_retry_after(rng.random_range(1..=5)),
        2 => {
            let lost = Fault::new(api, create_endpoint(api), FaultKind::LostResponse, 1);
            if rng.random_bool(0.3) {
                lost.with_status(504)
            } else {
                lost
            }
        }
        3 => Fault::new(api, any(rng), FaultKind::Timeout, 1),
        _ => {
            // FUSION answers with the file itself; the others' files come from storage.
            let endpoint = if api == ReportingApi::Fusion {
                "license"
            } else {
                STORAGE_ENDPOINT
            };
            Fault::new(api, endpoint, FaultKind::Cut, rng.random_range(1..=2))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(minutes: u64) -> PlanSettings {
        PlanSettings {
            chaos: Duration::from_secs(minutes * 60),
            generators_per_minute: 8.0,
            faults_per_minute: 6.0,
            kill_every: (Duration::from_secs(20), Duration::from_secs(90)),
            store_outage: Duration::from_secs(60),
        }
    }

    fn count(plan: &[Planned], f: impl Fn(&Event) -> bool) -> usize {
        plan.iter().filter(|p| f(&p.event)).count()
    }

    #[test]
    fn one_seed_one_plan() {
        assert_eq!(draw(7, &settings(30)), draw(7, &settings(30)));
        assert_ne!(draw(7, &settings(30)), draw(8, &settings(30)));
    }

    #[test]
    fn every_disturbance_is_in_the_plan_within_the_run() {
        for (seed, minutes) in [(1, 3), (2, 30), (3, 5), (4, 30)] {
            let s = settings(minutes);
            let plan = draw(seed, &s);
            assert!(plan.windows(2).all(|w| w[0].at <= w[1].at), "sorted");
            assert!(plan.iter().all(|p| p.at <= s.chaos), "within the run");
            assert_eq!(count(&plan, |e| *e == Event::RestartApiServer), 2);
            assert_eq!(count(&plan, |e| matches!(e, Event::StopObjectStore(_))), 1);
            assert_eq!(count(&plan, |e| *e == Event::DeleteNamespace), 1);
            // Kills 20 to 90 s apart.
            let kills: Vec<Duration> = plan
                .iter()
                .filter(|p| p.event == Event::KillOperator)
                .map(|p| p.at)
                .collect();
            assert!(!kills.is_empty());
            assert!(kills[0] >= Duration::from_secs(20));
            assert!(kills.windows(2).all(|w| {
                let gap = w[1] - w[0];
                gap >= Duration::from_secs(20) && gap <= Duration::from_secs(90)
            }));
            assert!(count(&plan, |e| matches!(e, Event::Fault(_))) > 0);
            // Every kind in every namespace at the start.
            let at_start = plan
                .iter()
                .filter(|p| p.at.is_zero() && matches!(p.event, Event::Generator(_)))
                .count();
            assert_eq!(at_start, 30);
        }
    }

    #[test]
    fn no_generator_goes_to_the_doomed_namespace_after_it_is_deleted() {
        for seed in 0..20 {
            let plan = draw(seed, &settings(30));
            let deleted = plan
                .iter()
                .find(|p| p.event == Event::DeleteNamespace)
                .map(|p| p.at)
                .expect("deletion");
            assert!(plan.iter().all(|p| match &p.event {
                Event::Generator(g) => g.ns != Ns::Doomed || p.at < deleted,
                _ => true,
            }));
        }
    }

    #[test]
    fn generator_indexes_are_unique_and_invoice_generators_capped() {
        let plan = draw(11, &settings(30));
        let gens: Vec<GeneratorPlan> = plan
            .iter()
            .filter_map(|p| match p.event {
                Event::Generator(g) => Some(g),
                _ => None,
            })
            .collect();
        let mut idx: Vec<usize> = gens.iter().map(|g| g.idx).collect();
        idx.sort();
        idx.dedup();
        assert_eq!(idx.len(), gens.len());
        for ns in Ns::ALL {
            let invoices = gens
                .iter()
                .filter(|g| g.ns == ns && g.kind == Kind::CmpInvoice)
                .count();
            assert!(invoices <= INVOICE_GENERATORS_PER_NS, "{ns:?}: {invoices}");
        }
        // Platform triggers come after their generator.
        for p in &plan {
            if let Event::RdeRun { idx, .. } | Event::CmpInvoice { idx } = p.event {
                let made = plan
                    .iter()
                    .find(|q| matches!(q.event, Event::Generator(g) if g.idx == idx))
                    .expect("its generator");
                assert!(made.at <= p.at);
            }
        }
    }

    #[test]
    fn faults_are_of_every_kind() {
        let plan = draw(5, &settings(30));
        let kinds: std::collections::HashSet<String> = plan
            .iter()
            .filter_map(|p| match &p.event {
                Event::Fault(f) => Some(format!("{:?}", f.kind)),
                _ => None,
            })
            .collect();
        assert_eq!(kinds.len(), 5, "{kinds:?}");
    }
}
