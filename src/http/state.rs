//! [`AppState`]: what handlers receive.

use std::ops::Deref;
use std::sync::Arc;

use crate::app::App;

/// What handlers receive: a cheap handle on the one [`App`].
#[derive(Clone)]
pub(crate) struct AppState(pub Arc<App>);

impl Deref for AppState {
    type Target = App;

    fn deref(&self) -> &App {
        &self.0
    }
}
