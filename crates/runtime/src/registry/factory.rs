//! The machinery behind the entries of [`crate::registry`]: one entry type per component
//! kind, generic over the component's config type `C`, and the validated config each entry
//! produces with its type erased ([`ReceiverConfig`], [`ProcessorConfig`],
//! [`ExporterConfig`]). Decoding validates once ([`ValidateInto`]) and keeps both the typed
//! config (compared on reload) and its validated value (what constructors take, so they
//! cannot fail on config). The erased config keeps a reference to its entry, so building a
//! component or reaching its dead letters needs no `match` on the type: the rest of the
//! runtime never names a concrete component.

use std::any::Any;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::future::BoxFuture;
use serde::de::DeserializeOwned;
use tracecast_config::{Config, ConfigErrors, RawComponent, ValidateInto};
use tracecast_core::dead_letter::{ListedLetter, ResendSummary};
use tracecast_core::{BatchSink, CancellationToken, ComponentId, Exporter, Processor, Receiver};

/// A component's own error, boxed: the runtime only reports it.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The value a component of config type `C` is built from.
pub type Valid<C> = <C as ValidateInto>::Validated;

/// An entry's receiver constructor.
pub type BuildReceiver<C> = fn(&ComponentId, &Valid<C>, Arc<dyn BatchSink>) -> Box<dyn Receiver>;
/// An entry's processor constructor: a validated config always builds.
pub type BuildProcessor<C> = fn(&ComponentId, &Valid<C>) -> Box<dyn Processor>;
/// An entry's exporter constructor. It cannot fail on config; it may fail setting up what
/// the exporter holds (an HTTP client, a local folder).
pub type BuildExporter<C> = fn(&ComponentId, &Valid<C>) -> Result<Box<dyn Exporter>, BoxError>;

/// An exporter type's dead-letter resend: sends them again; the token stops it early.
pub type Resend<C> = fn(
    ComponentId,
    Valid<C>,
    CancellationToken,
) -> BoxFuture<'static, Result<ResendSummary, BoxError>>;

/// What a component's config type must be: decoded from YAML, validated once into the value
/// its constructor takes, compared on reload (a component restarts only when its config
/// changed), shared between tasks.
pub trait ComponentConfig:
    DeserializeOwned
    + ValidateInto<Validated: Clone + Send + Sync + 'static>
    + Clone
    + PartialEq
    + fmt::Debug
    + Send
    + Sync
    + 'static
{
}

impl<C> ComponentConfig for C where
    C: DeserializeOwned
        + ValidateInto<Validated: Clone + Send + Sync + 'static>
        + Clone
        + PartialEq
        + fmt::Debug
        + Send
        + Sync
        + 'static
{
}

/// One component type, whatever its kind: its YAML type name and how its body decodes and
/// validates into the kind's config ([`Factory::Config`]).
pub trait Factory: Sync {
    /// The kind's validated config ([`ReceiverConfig`], ...).
    type Config;

    /// The YAML type (`otlp` in `otlp/axiom`).
    fn type_name(&self) -> &'static str;

    /// Test-only types exist only when [`crate::fault::enabled`], and are never listed
    /// among the known types.
    fn test_only(&self) -> bool {
        false
    }

    /// Decodes and validates one component's body, every problem with its path.
    fn decode(
        &'static self,
        config: &Config,
        raw: &RawComponent,
    ) -> Result<Self::Config, ConfigErrors>;
}

/// A receiver type.
pub struct ReceiverEntry<C: ValidateInto> {
    pub type_name: &'static str,
    /// Builds the receiver feeding `sink`; binds nothing yet ([`Receiver::bind`] does).
    pub build: BuildReceiver<C>,
}

/// A processor type.
pub struct ProcessorEntry<C: ValidateInto> {
    pub type_name: &'static str,
    /// See [`Factory::test_only`].
    pub test_only: bool,
    /// Builds a fresh instance (each pipeline gets its own, as in the Collector).
    pub build: BuildProcessor<C>,
}

/// An exporter type. Its connection test is [`Exporter::test_connection`] on what `build`
/// returns.
pub struct ExporterEntry<C: ValidateInto> {
    pub type_name: &'static str,
    pub build: BuildExporter<C>,
    pub dead_letters: DeadLetters<C>,
}

/// What `tracecast dead-letters` needs of an exporter type.
pub struct DeadLetters<C: ValidateInto> {
    /// The folder it keeps dead letters in (`dead_letter_dir`, else the default rule).
    pub dir: fn(&ComponentId, &Valid<C>) -> PathBuf,
    /// Every dead letter in that folder (a missing folder holds none).
    pub list: fn(&Path) -> std::io::Result<Vec<ListedLetter>>,
    /// Sends them again; the token stops it early (what was not sent stays).
    pub resend: Resend<C>,
}

/// A config as written and its validated value, together with the entry that decoded it.
struct Configured<E: 'static, C: ValidateInto> {
    entry: &'static E,
    config: C,
    valid: Valid<C>,
}

impl<E, C: ValidateInto + fmt::Debug> fmt::Debug for Configured<E, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.config.fmt(f)
    }
}

/// What the erased configs of every kind share: the type name, the typed value, equality.
trait Erased: fmt::Debug + Send + Sync {
    fn type_name(&self) -> &'static str;
    fn as_any(&self) -> &dyn Any;
    fn same(&self, other: &dyn Any) -> bool;
}

/// An entry's type name and its config type, for [`Configured`].
trait Entry: Sync + 'static {
    fn name(&self) -> &'static str;
}

impl<E: Entry, C: ComponentConfig> Erased for Configured<E, C> {
    fn type_name(&self) -> &'static str {
        self.entry.name()
    }
    fn as_any(&self) -> &dyn Any {
        &self.config
    }
    fn same(&self, other: &dyn Any) -> bool {
        other.downcast_ref::<C>() == Some(&self.config)
    }
}

macro_rules! erased_config {
    ($(#[$doc:meta])* $name:ident, $spec:ident) => {
        $(#[$doc])*
        #[derive(Clone)]
        pub struct $name(Arc<dyn $spec>);

        impl $name {
            /// The YAML type it was decoded for.
            pub fn type_name(&self) -> &'static str {
                self.0.type_name()
            }

            /// The typed config as written, when it is a `C` (for the few places that need
            /// one component's settings, e.g. posting quarantined entries to an OTLP
            /// receiver).
            pub fn get<C: 'static>(&self) -> Option<&C> {
                self.0.as_any().downcast_ref()
            }
        }

        impl PartialEq for $name {
            fn eq(&self, other: &Self) -> bool {
                self.type_name() == other.type_name() && self.0.same(other.0.as_any())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}: ", self.type_name())?;
                self.0.fmt(f)
            }
        }
    };
}

trait ReceiverSpec: Erased {
    fn build(&self, id: &ComponentId, sink: Arc<dyn BatchSink>) -> Box<dyn Receiver>;
}

trait ProcessorSpec: Erased {
    fn build(&self, id: &ComponentId) -> Box<dyn Processor>;
}

trait ExporterSpec: Erased {
    fn build(&self, id: &ComponentId) -> Result<Box<dyn Exporter>, BoxError>;
    fn dead_letter_dir(&self, id: &ComponentId) -> PathBuf;
    fn list_dead_letters(&self, dir: &Path) -> std::io::Result<Vec<ListedLetter>>;
    fn resend(
        &self,
        id: &ComponentId,
        stop: &CancellationToken,
    ) -> BoxFuture<'static, Result<ResendSummary, BoxError>>;
}

erased_config!(
    /// A receiver's validated config, whatever its type.
    ReceiverConfig,
    ReceiverSpec
);
erased_config!(
    /// A processor's validated config, whatever its type.
    ProcessorConfig,
    ProcessorSpec
);
erased_config!(
    /// An exporter's validated config, whatever its type.
    ExporterConfig,
    ExporterSpec
);

impl ReceiverConfig {
    /// Builds the receiver feeding `sink` (nothing is bound yet).
    pub fn build(&self, id: &ComponentId, sink: Arc<dyn BatchSink>) -> Box<dyn Receiver> {
        self.0.build(id, sink)
    }
}

impl ProcessorConfig {
    /// Builds a fresh processor instance.
    pub fn build(&self, id: &ComponentId) -> Box<dyn Processor> {
        self.0.build(id)
    }
}

impl ExporterConfig {
    /// Builds the exporter (not started).
    pub fn build(&self, id: &ComponentId) -> Result<Box<dyn Exporter>, BoxError> {
        self.0.build(id)
    }

    /// The folder exporter `id` keeps its dead letters in.
    pub fn dead_letter_dir(&self, id: &ComponentId) -> PathBuf {
        self.0.dead_letter_dir(id)
    }

    /// Every dead letter in `dir` (see [`Self::dead_letter_dir`]).
    pub fn list_dead_letters(&self, dir: &Path) -> std::io::Result<Vec<ListedLetter>> {
        self.0.list_dead_letters(dir)
    }

    /// Sends exporter `id`'s dead letters again.
    pub fn resend_dead_letters(
        &self,
        id: &ComponentId,
        stop: &CancellationToken,
    ) -> BoxFuture<'static, Result<ResendSummary, BoxError>> {
        self.0.resend(id, stop)
    }
}

impl<C: ValidateInto + 'static> Entry for ReceiverEntry<C> {
    fn name(&self) -> &'static str {
        self.type_name
    }
}

impl<C: ValidateInto + 'static> Entry for ProcessorEntry<C> {
    fn name(&self) -> &'static str {
        self.type_name
    }
}

impl<C: ValidateInto + 'static> Entry for ExporterEntry<C> {
    fn name(&self) -> &'static str {
        self.type_name
    }
}

impl<C: ComponentConfig> ReceiverSpec for Configured<ReceiverEntry<C>, C> {
    fn build(&self, id: &ComponentId, sink: Arc<dyn BatchSink>) -> Box<dyn Receiver> {
        (self.entry.build)(id, &self.valid, sink)
    }
}

impl<C: ComponentConfig> ProcessorSpec for Configured<ProcessorEntry<C>, C> {
    fn build(&self, id: &ComponentId) -> Box<dyn Processor> {
        (self.entry.build)(id, &self.valid)
    }
}

impl<C: ComponentConfig> ExporterSpec for Configured<ExporterEntry<C>, C> {
    fn build(&self, id: &ComponentId) -> Result<Box<dyn Exporter>, BoxError> {
        (self.entry.build)(id, &self.valid)
    }
    fn dead_letter_dir(&self, id: &ComponentId) -> PathBuf {
        (self.entry.dead_letters.dir)(id, &self.valid)
    }
    fn list_dead_letters(&self, dir: &Path) -> std::io::Result<Vec<ListedLetter>> {
        (self.entry.dead_letters.list)(dir)
    }
    fn resend(
        &self,
        id: &ComponentId,
        stop: &CancellationToken,
    ) -> BoxFuture<'static, Result<ResendSummary, BoxError>> {
        (self.entry.dead_letters.resend)(id.clone(), self.valid.clone(), stop.clone())
    }
}

/// Decodes `raw` into `C`, validates it once and pairs both with the entry that will build
/// the component.
fn configure<E, C: ComponentConfig>(
    entry: &'static E,
    config: &Config,
    raw: &RawComponent,
) -> Result<Configured<E, C>, ConfigErrors> {
    let (config, valid) = config.decode_validated::<C>(raw)?;
    Ok(Configured {
        entry,
        config,
        valid,
    })
}

impl<C: ComponentConfig> Factory for ReceiverEntry<C> {
    type Config = ReceiverConfig;
    fn type_name(&self) -> &'static str {
        self.type_name
    }
    fn decode(
        &'static self,
        config: &Config,
        raw: &RawComponent,
    ) -> Result<ReceiverConfig, ConfigErrors> {
        configure(self, config, raw).map(|c| ReceiverConfig(Arc::new(c)))
    }
}

impl<C: ComponentConfig> Factory for ProcessorEntry<C> {
    type Config = ProcessorConfig;
    fn type_name(&self) -> &'static str {
        self.type_name
    }
    fn test_only(&self) -> bool {
        self.test_only
    }
    fn decode(
        &'static self,
        config: &Config,
        raw: &RawComponent,
    ) -> Result<ProcessorConfig, ConfigErrors> {
        configure(self, config, raw).map(|c| ProcessorConfig(Arc::new(c)))
    }
}

impl<C: ComponentConfig> Factory for ExporterEntry<C> {
    type Config = ExporterConfig;
    fn type_name(&self) -> &'static str {
        self.type_name
    }
    fn decode(
        &'static self,
        config: &Config,
        raw: &RawComponent,
    ) -> Result<ExporterConfig, ConfigErrors> {
        configure(self, config, raw).map(|c| ExporterConfig(Arc::new(c)))
    }
}
