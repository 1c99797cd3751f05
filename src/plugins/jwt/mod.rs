//! JSON Web Token authentication: token parsing, signature verification and claim checks.

#[cfg(test)]
mod test_signer;
