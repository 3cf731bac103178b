//! Client → server commands.

/// The name of a command nsqd knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verb {
    /// `IDENTIFY`
    Identify,
    /// `AUTH`
    Auth,
    /// `SUB`
    Sub,
    /// `PUB`
    Pub,
    /// `MPUB`
    Mpub,
    /// `DPUB`
    Dpub,
    /// `RDY`
    Rdy,
    /// `FIN`
    Fin,
    /// `REQ`
    Req,
    /// `TOUCH`
    Touch,
    /// `CLS`
    Cls,
    /// `NOP`
    Nop,
}
