//! Fan-out: one job of a kind with several targets runs as one child job per target, and the
//! parent's status summarises theirs (docs/architecture.md, "Fan-out").

use serde::{Deserialize, Serialize};

use super::{InvalidKind, JobId, JobStatus, Kind};

/// What a job is to a fan-out, if anything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fanout {
    /// The job a client submitted: it runs nothing itself, and ends when its last child does.
    Parent {
        /// Its children, one per target, in the declaration's order.
        children: Vec<Child>,
        /// The children that did not succeed, once the parent ended.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        failures: Vec<Failure>,
    },
    /// One target's run of its parent's job.
    Child(ParentLink),
}

/// A child as its parent lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Child {
    /// The child job's id.
    pub id: JobId,
    /// The name of its target in the kind's declaration.
    pub target: String,
}

/// A child's tie to its parent, which its message carries so that a consumer can write the child
/// when intake's write did not land.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParentLink {
    /// The parent job's id.
    pub parent: JobId,
    /// The name of the child's target.
    pub target: String,
}

/// A child that ended other than `succeeded`, as its parent records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// The child job's id.
    pub id: JobId,
    /// Its target's name.
    pub target: String,
    /// How it ended.
    pub status: JobStatus,
    /// Its error, if it recorded one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What separates a fan-out kind's name from a target's in its children's kind,
/// `<kind>--<target>`. A declared kind's name may not contain it, so no declared kind can be
/// taken for a child's.
pub const CHILD_KIND_SEPARATOR: &str = "--";

/// The kind of `kind`'s children that run `target`: `<kind>--<target>`.
pub fn child_kind(kind: &Kind, target: &str) -> Result<Kind, InvalidKind> {
    Kind::parse(&format!("{kind}{CHILD_KIND_SEPARATOR}{target}"))
}

impl Fanout {
    /// The parent this job is a child of.
    pub fn parent(&self) -> Option<&ParentLink> {
        match self {
            Self::Child(link) => Some(link),
            Self::Parent { .. } => None,
        }
    }

    /// The children of this job, when it is a parent.
    pub fn children(&self) -> &[Child] {
        match self {
            Self::Parent { children, .. } => children,
            Self::Child(_) => &[],
        }
    }

    /// The failed children of this job, when it is a parent that ended.
    pub fn failures(&self) -> &[Failure] {
        match self {
            Self::Parent { failures, .. } => failures,
            Self::Child(_) => &[],
        }
    }
}

/// The parent's error once `failures` of its `children` did not succeed.
pub fn failure_summary(failures: &[Failure], children: usize) -> String {
    let targets: Vec<&str> = failures.iter().map(|f| f.target.as_str()).collect();
    format!(
        "{} of {children} targets did not succeed: {}",
        failures.len(),
        targets.join(", ")
    )
}
