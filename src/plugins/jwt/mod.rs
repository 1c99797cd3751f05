//! JSON Web Token authentication: token parsing, signature verification and claim checks.

pub mod token;

#[cfg(test)]
mod test_signer;
