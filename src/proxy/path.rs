//! Request path normalisation and upstream path joining.
