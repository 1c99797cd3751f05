//! Request router (see module docs once written).
