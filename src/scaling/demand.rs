//! How many queued items wait for a pool's label. Jenkins' queue items carry no label
//! field: the label shows only in `why`, and not at all while an item sits in its quiet
//! period. Sources, in order of trust: Jenkins' own load statistics for the label, the
//! label named in `why`, and the label an earlier queue webhook named for the same item.

use crate::domain::Label;
use std::collections::HashMap;

/// A queue item as far as demand goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedItem {
    pub id: u64,
    /// Blocked items (e.g. waiting for another build of the same job) need no executor.
    pub blocked: bool,
    pub why: Option<String>,
}

pub use crate::domain::QueueDemand;

/// Counts the items waiting for `label`. Only items Jenkins lists now count (Jenkins is
/// authoritative for what is queued); webhooks only add what Jenkins does not say.
pub fn queued_for_label(
    label: &Label,
    items: &[QueuedItem],
    event_labels: &HashMap<u64, String>,
    load_statistics: f64,
) -> QueueDemand {
    let mut from_why = 0;
    let mut from_events = 0;
    for item in items.iter().filter(|i| !i.blocked) {
        match item.why.as_deref().and_then(crate::domain::label_from_why) {
            Some(l) if label.is(&l) => from_why += 1,
            Some(_) => {}
            None => {
                if event_labels.get(&item.id).is_some_and(|l| label.is(l)) {
                    from_events += 1;
                }
            }
        }
    }
    let stats = if load_statistics.is_finite() && load_statistics > 0.0 {
        load_statistics.round() as u32
    } else {
        0
    };
    QueueDemand {
        queued: stats.max(from_why + from_events),
        load_statistics: stats,
        from_why,
        from_events,
        announced: 0,
    }
}

impl QueueDemand {
    /// With `n` announced builds: what Jenkins lists, or the announced ones when more.
    pub fn with_announced(mut self, n: u32) -> Self {
        self.announced = n;
        self.queued = self.queued.max(n);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(id: u64, why: Option<&str>) -> QueuedItem {
        QueuedItem {
            id,
            blocked: false,
            why: why.map(str::to_string),
        }
    }

    #[test]
    fn sources_combine() {
        let items = vec![
            item(1, Some("Waiting for next available executor on ‘linux’")),
            item(2, Some("There are no nodes with the label ‘linux’")),
            item(3, Some("Waiting for next available executor on ‘windows’")),
            item(4, Some("In the quiet period. Expires in 3.2 sec")),
            item(5, None),
            QueuedItem {
                id: 6,
                blocked: true,
                why: Some("Build #4 is already in progress".into()),
            },
        ];
        let events: HashMap<u64, String> = [
            (4, "linux".to_string()),
            (5, "windows".to_string()),
            (99, "linux".to_string()),
        ]
        .into();
        let linux = Label::parse("linux").unwrap();
        let d = queued_for_label(&linux, &items, &events, 0.4);
        assert_eq!(
            d,
            QueueDemand {
                queued: 3,
                load_statistics: 0,
                from_why: 2,
                from_events: 1,
                announced: 0,
            }
        );
        // Announced builds count until Jenkins lists as many.
        assert_eq!(d.with_announced(2).queued, 3);
        assert_eq!(d.with_announced(5).queued, 5);
        // Load statistics win when they see more.
        assert_eq!(queued_for_label(&linux, &items, &events, 5.6).queued, 6);
        // Expressions compare without spaces.
        let expr = vec![item(
            7,
            Some("Waiting for next available executor on ‘docker&&amd64’"),
        )];
        assert_eq!(
            queued_for_label(
                &Label::parse("docker && amd64").unwrap(),
                &expr,
                &HashMap::new(),
                f64::NAN
            )
            .queued,
            1
        );
    }
}
