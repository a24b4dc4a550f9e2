//! Requests in flight per peer address: one client (or one attacker) holding many slow
//! requests open gets 503 past `server.max_requests_per_peer`, while others, and the
//! kubelet's health checks from their own address, are still answered.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// The count of requests in flight for each peer.
#[derive(Clone)]
pub struct PeerLimit {
    max: usize,
    in_flight: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// A request's place among its peer's; dropping it frees the place.
pub struct Slot {
    peer: IpAddr,
    in_flight: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl PeerLimit {
    pub fn new(max: usize) -> Self {
        Self {
            max: max.max(1),
            in_flight: Arc::default(),
        }
    }

    /// A place for one more request from `peer`, or `None` when it has `max` already.
    pub fn admit(&self, peer: IpAddr) -> Option<Slot> {
        let mut m = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        let n = m.entry(peer).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(Slot {
            peer,
            in_flight: self.in_flight.clone(),
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut m = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = m.get_mut(&self.peer) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.peer);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_gets_its_places_and_frees_them() {
        let l = PeerLimit::new(2);
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let one = l.admit(a).unwrap();
        let _two = l.admit(a).unwrap();
        assert!(l.admit(a).is_none(), "a third from the same peer");
        assert!(l.admit(b).is_some(), "another peer is not held back");
        drop(one);
        assert!(l.admit(a).is_some(), "a freed place is taken again");
    }
}
