package config

import (
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// The generated types' ValidateAll (protoc-gen-validate) reports problems as a tree:
// a MultiError per message holding one ValidationError per violation, whose Field() is the
// Go name of the field (with "[index]" for list and map elements) and whose Cause() is the
// nested message's own errors. These interfaces are what every generated type implements.
type pgvError interface {
	Field() string
	Reason() string
	Cause() error
	Key() bool
}

type pgvMultiError interface {
	AllErrors() []error
}

type validatorAll interface {
	ValidateAll() error
}

// validate runs ValidateAll on m, at `at`. PGV does not look inside Any values: the subset
// check validates the message in each one.
func (c *collector) validate(m proto.Message, at *loc) {
	if v, ok := m.(validatorAll); ok {
		if err := v.ValidateAll(); err != nil {
			c.pgv(err, m.ProtoReflect().Descriptor(), at.canonical())
		}
	}
}

// pgv turns a PGV error tree rooted at a message of type md (at path at) into field errors.
func (c *collector) pgv(err error, md protoreflect.MessageDescriptor, at string) {
	if me, ok := err.(pgvMultiError); ok {
		for _, e := range me.AllErrors() {
			c.pgv(e, md, at)
		}
		return
	}
	ve, ok := err.(pgvError)
	if !ok {
		c.addCanonical(at, "%v", err)
		return
	}
	goName, idx := splitIndex(ve.Field())
	fd, od := goField(md, goName)
	reason := ve.Reason()
	switch reason {
	case "value length must be at least 1 runes", "value length must be at least 1 bytes":
		reason = "required (must not be empty)"
	}
	if ve.Key() {
		reason = "map key: " + reason
	}
	switch {
	case fd != nil:
		p := field(at, string(fd.Name()))
		if idx != "" {
			p += "[" + idx + "]"
		}
		child := fd.Message()
		if fd.IsMap() {
			child = fd.MapValue().Message()
		}
		cause := ve.Cause()
		if cause != nil && child != nil && isPGV(cause) {
			c.pgv(cause, child, p)
			return
		}
		if cause != nil {
			reason += ": " + cause.Error()
		}
		if reason == "value is required" {
			reason = "required"
		}
		c.addCanonical(p, "%s", reason)
	case od != nil:
		// A required oneof: name its members, which is what the user writes.
		names := make([]string, od.Fields().Len())
		for i := range names {
			names[i] = string(od.Fields().Get(i).Name())
		}
		if reason == "value is required" {
			for _, n := range names {
				if c.reported(field(at, n)) {
					return // a member was written but rejected (or misspelled)
				}
			}
			c.addCanonical(at, "one of %s is required", strings.Join(names, ", "))
			return
		}
		c.addCanonical(at, "%s (%s): %s", od.Name(), strings.Join(names, ", "), reason)
	default:
		c.addCanonical(at, "%s: %s", ve.Field(), reason)
	}
}

func isPGV(err error) bool {
	switch err.(type) {
	case pgvError, pgvMultiError:
		return true
	}
	return false
}

// splitIndex splits "Listeners[3]" into "Listeners" and "3".
func splitIndex(s string) (name, idx string) {
	if i := strings.IndexByte(s, '['); i > 0 && strings.HasSuffix(s, "]") {
		return s[:i], s[i+1 : len(s)-1]
	}
	return s, ""
}

// goField finds the field or oneof whose generated Go name is goName. Go names are the
// proto names in CamelCase, so comparing without underscores and case is enough within
// one message.
func goField(md protoreflect.MessageDescriptor, goName string) (protoreflect.FieldDescriptor, protoreflect.OneofDescriptor) {
	norm := func(s string) string { return strings.ToLower(strings.ReplaceAll(s, "_", "")) }
	want := norm(goName)
	for i := 0; i < md.Fields().Len(); i++ {
		if fd := md.Fields().Get(i); norm(string(fd.Name())) == want {
			return fd, nil
		}
	}
	for i := 0; i < md.Oneofs().Len(); i++ {
		if od := md.Oneofs().Get(i); norm(string(od.Name())) == want {
			return nil, od
		}
	}
	return nil, nil
}
