//! Components of a library loaded into this process: activation through the root module, calls
//! through abi_stable's trait object ([`ComponentFfi`](diffy_plugin_api::ffi::ComponentFfi)), and
//! the host's services offered the other way ([`HostFfi`]).

use std::time::Instant;

use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{RSlice, RStr, RVec};
use diffy_plugin_api::ComponentKind;
use diffy_plugin_api::ffi::{CallStatus, ComponentBox, HostBox, HostFfi, HostFfi_TO};
use serde_json::{Map, Value};

use super::LoadedLibrary;
use crate::component::{CallFailure, ComponentHandle, Label, Transport};
use crate::error::Result;
use crate::services::{HostServices, ServiceProvider};

impl LoadedLibrary {
    /// Construct the component of `kind` named `name` with `options` (already validated against
    /// its schema and completed with its defaults), served by `services`.
    pub fn activate(
        &self,
        kind: ComponentKind,
        name: &str,
        services: HostServices,
        options: &Map<String, Value>,
    ) -> Result<ComponentHandle> {
        let label = Label {
            plugin: self.manifest.name.clone(),
            kind,
            name: name.to_string(),
        };
        let options = serde_json::to_vec(options).expect("options serialise");
        let transport = self
            .activate_transport(kind, name, Box::new(services), &options)
            .map_err(|failure| label.activation_failed(failure))?;
        Ok(ComponentHandle::new(label, &self.manifest, transport))
    }

    /// Construct a component and return its raw transport: what an isolated plugin's runner
    /// serves over its pipe. `options` is the options object as JSON.
    pub(crate) fn activate_transport(
        &self,
        kind: ComponentKind,
        name: &str,
        services: Box<dyn ServiceProvider>,
        options: &[u8],
    ) -> std::result::Result<Box<dyn Transport>, CallFailure> {
        let started = Instant::now();
        let host: HostBox = HostFfi_TO::from_value(ServicesAdapter(services), TD_Opaque);
        let activate = self.module.activate();
        let component = activate(
            RStr::from_str(kind.as_str()),
            RStr::from_str(name),
            host,
            RSlice::from_slice(options),
        )
        .into_result()
        .map_err(|e| {
            let message = e.message.into_string();
            if e.status == CallStatus::PANICKED {
                CallFailure::Panicked(message)
            } else {
                CallFailure::Error(message)
            }
        })?;
        tracing::info!(
            plugin = %self.manifest.name,
            component = %format!("{kind} {name}"),
            activate_us = started.elapsed().as_micros() as u64,
            "activated component"
        );
        Ok(Box::new(InProcess { component }))
    }
}

/// A component in a library loaded into this process.
struct InProcess {
    component: ComponentBox,
}

impl Transport for InProcess {
    fn call(&self, method: &str, input: &[u8]) -> Result<Vec<u8>, CallFailure> {
        // Room for a small answer up front: the plugin writes it token by token, and each growth
        // of an empty buffer is a reallocation through the vector's vtable.
        let mut output = RVec::with_capacity(256);
        let status = self.component.call(
            RStr::from_str(method),
            RSlice::from_slice(input),
            &mut output,
        );
        let output = output.into_vec();
        match status {
            CallStatus::OK => Ok(output),
            CallStatus::PANICKED => Err(CallFailure::Panicked(text(output))),
            CallStatus::NO_SUCH_METHOD => Err(CallFailure::NoSuchMethod(text(output))),
            _ => Err(CallFailure::Error(text(output))),
        }
    }
}

fn text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// The host's services as the boundary's [`HostFfi`]: every call goes to the provider (the host's
/// own services, or a runner's forwarder to them), and a panic there is caught before it could
/// unwind into the plugin.
struct ServicesAdapter(Box<dyn ServiceProvider>);

impl HostFfi for ServicesAdapter {
    fn call(&self, service: RStr<'_>, input: RSlice<'_, u8>, output: &mut RVec<u8>) -> CallStatus {
        let answer = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.0.call(service.as_str(), input.as_slice())
        }));
        let (status, bytes) = match answer {
            Ok(Ok(bytes)) => (CallStatus::OK, bytes),
            Ok(Err(CallFailure::NoSuchMethod(m))) => (CallStatus::NO_SUCH_METHOD, m.into_bytes()),
            Ok(Err(CallFailure::Error(m) | CallFailure::Panicked(m) | CallFailure::Lost(m))) => {
                (CallStatus::ERROR, m.into_bytes())
            }
            Err(_) => (
                CallStatus::PANICKED,
                b"the host panicked in a service".to_vec(),
            ),
        };
        output.clear();
        output.extend_from_slice(&bytes);
        status
    }
}
