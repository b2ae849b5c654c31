//! Whether this daemon writes, and if not, why: one pure decision over
//! what the pass learned (the IO stays in the daemon).
//!
//! | strategy | lease (Swarm)   | elder writer | revision hold | lease recorded | role |
//! |----------|-----------------|--------------|---------------|----------------|------|
//! | Swarm    | another's       | -            | -             | -              | Standby(Follower) |
//! | any      | mine or none    | live         | -             | -              | Standby(ElderWriter) |
//! | any      | mine or none    | none         | held          | -              | Standby(RevisionHold) |
//! | Swarm    | mine            | none         | none          | no             | Standby(LeaseNotRecorded) |
//! | Swarm    | mine            | none         | none          | yes            | Leader |
//! | local    | -               | none         | none          | -              | Local |
//!
//! The rows are tried in this order: the first that matches decides.

/// This daemon's role in one pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// The only writer of a local engine's instance.
    Local,
    /// The holder of the Swarm writer lease.
    Leader,
    /// Writes nothing this pass.
    Standby(Why),
}

/// Why a daemon stands by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Why {
    /// Another daemon holds the Swarm writer lease.
    Follower,
    /// Another live daemon of the instance started earlier (its words).
    ElderWriter(String),
    /// This lease holder's copy of the manifests is older than, or cannot
    /// be ordered against, the one applied before (its words).
    RevisionHold(String),
    /// The lease could not take this pass's revision: it was lost meanwhile.
    LeaseNotRecorded,
}

/// What the pass learned that decides the role.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Facts {
    pub swarm: bool,
    /// Swarm: whether this daemon may write under the lease.
    pub lease_mine: bool,
    pub elder_writer: Option<String>,
    pub revision_hold: Option<String>,
    /// Swarm: whether the lease took this pass's revision (`true` until
    /// asked: it is asked only of a daemon that would write).
    pub lease_recorded: bool,
}

pub fn decide(facts: &Facts) -> Role {
    if facts.swarm && !facts.lease_mine {
        return Role::Standby(Why::Follower);
    }
    if let Some(elder) = &facts.elder_writer {
        return Role::Standby(Why::ElderWriter(elder.clone()));
    }
    if let Some(hold) = &facts.revision_hold {
        return Role::Standby(Why::RevisionHold(hold.clone()));
    }
    match (facts.swarm, facts.lease_recorded) {
        (true, false) => Role::Standby(Why::LeaseNotRecorded),
        (true, true) => Role::Leader,
        (false, _) => Role::Local,
    }
}

impl Role {
    pub fn writes(&self) -> bool {
        !matches!(self, Role::Standby(_))
    }

    /// As status shows it: `local`, `leader` or `standby`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Role::Local => "local",
            Role::Leader => "leader",
            Role::Standby(_) => "standby",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn swarm_leader() -> Facts {
        Facts {
            swarm: true,
            lease_mine: true,
            lease_recorded: true,
            ..Default::default()
        }
    }

    #[test]
    fn row_1_a_lease_follower_stands_by_whatever_else_holds() {
        let facts = Facts {
            lease_mine: false,
            revision_hold: Some("older".into()),
            ..swarm_leader()
        };
        assert_eq!(decide(&facts), Role::Standby(Why::Follower));
    }

    #[test]
    fn row_2_a_live_elder_writer_is_given_way_to() {
        let facts = Facts {
            elder_writer: Some("n1:/srv/other".into()),
            ..Default::default()
        };
        assert_eq!(
            decide(&facts),
            Role::Standby(Why::ElderWriter("n1:/srv/other".into()))
        );
    }

    #[test]
    fn row_3_a_revision_hold_stands_by() {
        let facts = Facts {
            revision_hold: Some("older than applied".into()),
            ..swarm_leader()
        };
        assert_eq!(
            decide(&facts),
            Role::Standby(Why::RevisionHold("older than applied".into()))
        );
    }

    #[test]
    fn row_4_a_lease_that_did_not_take_the_revision_stands_by() {
        let facts = Facts {
            lease_recorded: false,
            ..swarm_leader()
        };
        assert_eq!(decide(&facts), Role::Standby(Why::LeaseNotRecorded));
    }

    #[test]
    fn row_5_the_lease_holder_leads() {
        assert_eq!(decide(&swarm_leader()), Role::Leader);
        assert_eq!(decide(&swarm_leader()).as_str(), "leader");
    }

    #[test]
    fn row_6_a_local_daemon_alone_writes() {
        let facts = Facts::default();
        assert_eq!(decide(&facts), Role::Local);
        assert!(decide(&facts).writes());
        assert!(!Role::Standby(Why::Follower).writes());
    }
}
