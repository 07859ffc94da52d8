//! The OTLP trace messages' JSON field tables: which keys each message accepts (both the
//! lowerCamelCase JSON names and the .proto's snake_case names, as proto3 JSON requires of
//! parsers) and how each field's value is read.

use serde::de::MapAccess;

use super::de::{Cx, Leaf, List, Msg, Nested, Obj, OptObj};
use super::scalars::{
    Base64, Boolean, Double, HexId, Int32, Int64, Text, Uint32, Uint64, SPAN_KIND, STATUS_CODE,
};
use crate::proto::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use crate::proto::common::v1::{
    any_value, AnyValue, ArrayValue, EntityRef, InstrumentationScope, KeyValue, KeyValueList,
};
use crate::proto::resource::v1::Resource;
use crate::proto::trace::v1::{span, ResourceSpans, ScopeSpans, Span, Status};

/// Declares a message's fields: `Variant = "camelName" | "snake_name"`, then the reader.
macro_rules! message {
    (
        $msg:ty, $field:ident { $($variant:ident = $camel:literal $(| $alt:literal)*),* $(,)? }
        |$this:ident, $f:ident, $map:ident, $cx:ident| $body:block
    ) => {
        #[derive(Clone, Copy)]
        pub(super) enum $field { $($variant),* }

        impl Msg for $msg {
            type Field = $field;
            fn field(key: &str) -> Option<$field> {
                match key {
                    $($camel $(| $alt)* => Some($field::$variant),)*
                    _ => None,
                }
            }
            fn field_name(field: $field) -> &'static str {
                match field { $($field::$variant => $camel),* }
            }
            fn read<'de, A: MapAccess<'de>>(
                &mut self,
                $f: $field,
                $map: &mut A,
                $cx: &Cx,
            ) -> Result<(), A::Error> {
                let $this = self;
                $body
                Ok(())
            }
        }
    };
}

const TRACE_ID: HexId = HexId(16);
const SPAN_ID: HexId = HexId(8);

fn attributes<'c>(cx: &'c Cx) -> List<'c, Obj<'c, KeyValue>> {
    List::new(cx, Obj::new(cx))
}

message!(ExportTraceServiceRequest, RequestField {
    ResourceSpans = "resourceSpans" | "resource_spans",
} |this, f, map, cx| {
    match f {
        RequestField::ResourceSpans => {
            this.resource_spans = map.next_value_seed(List::new(cx, Obj::new(cx)))?
        }
    }
});

message!(ResourceSpans, ResourceSpansField {
    Resource = "resource",
    ScopeSpans = "scopeSpans" | "scope_spans",
    SchemaUrl = "schemaUrl" | "schema_url",
} |this, f, map, cx| {
    match f {
        ResourceSpansField::Resource => this.resource = map.next_value_seed(OptObj::new(cx))?,
        ResourceSpansField::ScopeSpans => {
            this.scope_spans = map.next_value_seed(List::new(cx, Obj::new(cx)))?
        }
        ResourceSpansField::SchemaUrl => this.schema_url = map.next_value_seed(Leaf::new(cx, Text))?,
    }
});

message!(Resource, ResourceField {
    Attributes = "attributes",
    DroppedAttributesCount = "droppedAttributesCount" | "dropped_attributes_count",
    EntityRefs = "entityRefs" | "entity_refs",
} |this, f, map, cx| {
    match f {
        ResourceField::Attributes => this.attributes = map.next_value_seed(attributes(cx))?,
        ResourceField::DroppedAttributesCount => {
            this.dropped_attributes_count = map.next_value_seed(Leaf::new(cx, Uint32))?
        }
        ResourceField::EntityRefs => {
            this.entity_refs = map.next_value_seed(List::new(cx, Obj::new(cx)))?
        }
    }
});

message!(EntityRef, EntityRefField {
    SchemaUrl = "schemaUrl" | "schema_url",
    Type = "type",
    IdKeys = "idKeys" | "id_keys",
    DescriptionKeys = "descriptionKeys" | "description_keys",
} |this, f, map, cx| {
    let keys = List::new(cx, Leaf::new(cx, Text));
    match f {
        EntityRefField::SchemaUrl => this.schema_url = map.next_value_seed(Leaf::new(cx, Text))?,
        EntityRefField::Type => this.r#type = map.next_value_seed(Leaf::new(cx, Text))?,
        EntityRefField::IdKeys => this.id_keys = map.next_value_seed(keys)?,
        EntityRefField::DescriptionKeys => this.description_keys = map.next_value_seed(keys)?,
    }
});

message!(ScopeSpans, ScopeSpansField {
    Scope = "scope",
    Spans = "spans",
    SchemaUrl = "schemaUrl" | "schema_url",
} |this, f, map, cx| {
    match f {
        ScopeSpansField::Scope => this.scope = map.next_value_seed(OptObj::new(cx))?,
        ScopeSpansField::Spans => this.spans = map.next_value_seed(List::spans(cx, Obj::new(cx)))?,
        ScopeSpansField::SchemaUrl => this.schema_url = map.next_value_seed(Leaf::new(cx, Text))?,
    }
});

message!(InstrumentationScope, ScopeField {
    Name = "name",
    Version = "version",
    Attributes = "attributes",
    DroppedAttributesCount = "droppedAttributesCount" | "dropped_attributes_count",
} |this, f, map, cx| {
    match f {
        ScopeField::Name => this.name = map.next_value_seed(Leaf::new(cx, Text))?,
        ScopeField::Version => this.version = map.next_value_seed(Leaf::new(cx, Text))?,
        ScopeField::Attributes => this.attributes = map.next_value_seed(attributes(cx))?,
        ScopeField::DroppedAttributesCount => {
            this.dropped_attributes_count = map.next_value_seed(Leaf::new(cx, Uint32))?
        }
    }
});

message!(Span, SpanField {
    TraceId = "traceId" | "trace_id",
    SpanId = "spanId" | "span_id",
    TraceState = "traceState" | "trace_state",
    ParentSpanId = "parentSpanId" | "parent_span_id",
    Flags = "flags",
    Name = "name",
    Kind = "kind",
    StartTimeUnixNano = "startTimeUnixNano" | "start_time_unix_nano",
    EndTimeUnixNano = "endTimeUnixNano" | "end_time_unix_nano",
    Attributes = "attributes",
    DroppedAttributesCount = "droppedAttributesCount" | "dropped_attributes_count",
    Events = "events",
    DroppedEventsCount = "droppedEventsCount" | "dropped_events_count",
    Links = "links",
    DroppedLinksCount = "droppedLinksCount" | "dropped_links_count",
    Status = "status",
} |this, f, map, cx| {
    match f {
        SpanField::TraceId => this.trace_id = map.next_value_seed(Leaf::new(cx, TRACE_ID))?,
        SpanField::SpanId => this.span_id = map.next_value_seed(Leaf::new(cx, SPAN_ID))?,
        SpanField::TraceState => this.trace_state = map.next_value_seed(Leaf::new(cx, Text))?,
        SpanField::ParentSpanId => {
            this.parent_span_id = map.next_value_seed(Leaf::new(cx, SPAN_ID))?
        }
        SpanField::Flags => this.flags = map.next_value_seed(Leaf::new(cx, Uint32))?,
        SpanField::Name => this.name = map.next_value_seed(Leaf::new(cx, Text))?,
        SpanField::Kind => this.kind = map.next_value_seed(Leaf::new(cx, SPAN_KIND))?,
        SpanField::StartTimeUnixNano => {
            this.start_time_unix_nano = map.next_value_seed(Leaf::new(cx, Uint64))?
        }
        SpanField::EndTimeUnixNano => {
            this.end_time_unix_nano = map.next_value_seed(Leaf::new(cx, Uint64))?
        }
        SpanField::Attributes => this.attributes = map.next_value_seed(attributes(cx))?,
        SpanField::DroppedAttributesCount => {
            this.dropped_attributes_count = map.next_value_seed(Leaf::new(cx, Uint32))?
        }
        SpanField::Events => this.events = map.next_value_seed(List::new(cx, Obj::new(cx)))?,
        SpanField::DroppedEventsCount => {
            this.dropped_events_count = map.next_value_seed(Leaf::new(cx, Uint32))?
        }
        SpanField::Links => this.links = map.next_value_seed(List::new(cx, Obj::new(cx)))?,
        SpanField::DroppedLinksCount => {
            this.dropped_links_count = map.next_value_seed(Leaf::new(cx, Uint32))?
        }
        SpanField::Status => this.status = map.next_value_seed(OptObj::new(cx))?,
    }
});

message!(span::Event, EventField {
    TimeUnixNano = "timeUnixNano" | "time_unix_nano",
    Name = "name",
    Attributes = "attributes",
    DroppedAttributesCount = "droppedAttributesCount" | "dropped_attributes_count",
} |this, f, map, cx| {
    match f {
        EventField::TimeUnixNano => {
            this.time_unix_nano = map.next_value_seed(Leaf::new(cx, Uint64))?
        }
        EventField::Name => this.name = map.next_value_seed(Leaf::new(cx, Text))?,
        EventField::Attributes => this.attributes = map.next_value_seed(attributes(cx))?,
        EventField::DroppedAttributesCount => {
            this.dropped_attributes_count = map.next_value_seed(Leaf::new(cx, Uint32))?
        }
    }
});

message!(span::Link, LinkField {
    TraceId = "traceId" | "trace_id",
    SpanId = "spanId" | "span_id",
    TraceState = "traceState" | "trace_state",
    Attributes = "attributes",
    DroppedAttributesCount = "droppedAttributesCount" | "dropped_attributes_count",
    Flags = "flags",
} |this, f, map, cx| {
    match f {
        LinkField::TraceId => this.trace_id = map.next_value_seed(Leaf::new(cx, TRACE_ID))?,
        LinkField::SpanId => this.span_id = map.next_value_seed(Leaf::new(cx, SPAN_ID))?,
        LinkField::TraceState => this.trace_state = map.next_value_seed(Leaf::new(cx, Text))?,
        LinkField::Attributes => this.attributes = map.next_value_seed(attributes(cx))?,
        LinkField::DroppedAttributesCount => {
            this.dropped_attributes_count = map.next_value_seed(Leaf::new(cx, Uint32))?
        }
        LinkField::Flags => this.flags = map.next_value_seed(Leaf::new(cx, Uint32))?,
    }
});

message!(Status, StatusField {
    Message = "message",
    Code = "code",
} |this, f, map, cx| {
    match f {
        StatusField::Message => this.message = map.next_value_seed(Leaf::new(cx, Text))?,
        StatusField::Code => this.code = map.next_value_seed(Leaf::new(cx, STATUS_CODE))?,
    }
});

message!(KeyValue, KeyValueField {
    Key = "key",
    Value = "value",
    KeyStrindex = "keyStrindex" | "key_strindex",
} |this, f, map, cx| {
    match f {
        KeyValueField::Key => this.key = map.next_value_seed(Leaf::new(cx, Text))?,
        KeyValueField::Value => {
            this.value = map.next_value_seed(Nested::new(cx, OptObj::new(cx)))?
        }
        KeyValueField::KeyStrindex => this.key_strindex = map.next_value_seed(Leaf::new(cx, Int32))?,
    }
});

message!(ArrayValue, ArrayValueField {
    Values = "values",
} |this, f, map, cx| {
    match f {
        ArrayValueField::Values => {
            this.values = map.next_value_seed(List::new(cx, Nested::new(cx, Obj::new(cx))))?
        }
    }
});

message!(KeyValueList, KeyValueListField {
    Values = "values",
} |this, f, map, cx| {
    match f {
        KeyValueListField::Values => this.values = map.next_value_seed(attributes(cx))?,
    }
});

// A oneof: `{}` (or only nulls) is the empty value; a `null` member is "not set".
message!(AnyValue, AnyValueField {
    StringValue = "stringValue" | "string_value",
    BoolValue = "boolValue" | "bool_value",
    IntValue = "intValue" | "int_value",
    DoubleValue = "doubleValue" | "double_value",
    ArrayValue = "arrayValue" | "array_value",
    KvlistValue = "kvlistValue" | "kvlist_value",
    BytesValue = "bytesValue" | "bytes_value",
    StringValueStrindex = "stringValueStrindex" | "string_value_strindex",
} |this, f, map, cx| {
    use any_value::Value;
    let value = match f {
        AnyValueField::StringValue => map
            .next_value_seed(Leaf::new(cx, OrNull(Text)))?
            .map(Value::StringValue),
        AnyValueField::BoolValue => map
            .next_value_seed(Leaf::new(cx, OrNull(Boolean)))?
            .map(Value::BoolValue),
        AnyValueField::IntValue => map
            .next_value_seed(Leaf::new(cx, OrNull(Int64)))?
            .map(Value::IntValue),
        AnyValueField::DoubleValue => map
            .next_value_seed(Leaf::new(cx, OrNull(Double)))?
            .map(Value::DoubleValue),
        AnyValueField::ArrayValue => map
            .next_value_seed(OptObj::new(cx))?
            .map(Value::ArrayValue),
        AnyValueField::KvlistValue => map
            .next_value_seed(OptObj::new(cx))?
            .map(Value::KvlistValue),
        AnyValueField::BytesValue => map
            .next_value_seed(Leaf::new(cx, OrNull(Base64)))?
            .map(Value::BytesValue),
        AnyValueField::StringValueStrindex => map
            .next_value_seed(Leaf::new(cx, OrNull(Int32)))?
            .map(Value::StringValueStrindex),
    };
    if value.is_some() {
        this.value = value;
    }
});

message!(ExportTraceServiceResponse, ResponseField {
    PartialSuccess = "partialSuccess" | "partial_success",
} |this, f, map, cx| {
    match f {
        ResponseField::PartialSuccess => this.partial_success = map.next_value_seed(OptObj::new(cx))?,
    }
});

message!(ExportTracePartialSuccess, PartialSuccessField {
    RejectedSpans = "rejectedSpans" | "rejected_spans",
    ErrorMessage = "errorMessage" | "error_message",
} |this, f, map, cx| {
    match f {
        PartialSuccessField::RejectedSpans => {
            this.rejected_spans = map.next_value_seed(Leaf::new(cx, Int64))?
        }
        PartialSuccessField::ErrorMessage => {
            this.error_message = map.next_value_seed(Leaf::new(cx, Text))?
        }
    }
});

/// Wraps a parser so that `null` gives `None` (a oneof member that is not set).
#[derive(Clone, Copy)]
struct OrNull<P>(P);

impl<P: super::de::Parse> super::de::Parse for OrNull<P> {
    type Out = Option<P::Out>;
    fn parse(self, value: super::de::Scalar<'_>) -> Result<Self::Out, String> {
        match value {
            super::de::Scalar::Null => Ok(None),
            other => self.0.parse(other).map(Some),
        }
    }
}
