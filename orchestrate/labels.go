package orchestrate

import (
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
)

// Matches reports whether labels satisfy the selector: every MatchLabels
// pair is there and every MatchExpressions requirement holds. A nil or
// empty selector matches everything. A requirement with an unknown
// operator matches nothing (Validate refuses it).
func (s *LabelSelector) Matches(labels map[string]string) bool {
	if s == nil {
		return true
	}
	for k, v := range s.MatchLabels {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	for _, r := range s.MatchExpressions {
		if !r.Matches(labels) {
			return false
		}
	}
	return true
}

// Matches reports whether labels satisfy the requirement.
func (r LabelSelectorRequirement) Matches(labels map[string]string) bool {
	v, ok := labels[r.Key]
	switch r.Operator {
	case LabelSelectorOpIn:
		return ok && slices.Contains(r.Values, v)
	case LabelSelectorOpNotIn:
		return !ok || !slices.Contains(r.Values, v)
	case LabelSelectorOpExists:
		return ok
	case LabelSelectorOpDoesNotExist:
		return !ok
	}
	return false
}

// Empty reports whether the selector has no requirement at all (and so
// matches everything).
func (s *LabelSelector) Empty() bool {
	return s == nil || len(s.MatchLabels) == 0 && len(s.MatchExpressions) == 0
}

// Validate checks the selector's keys, values and operators. The error
// wraps ErrInvalid.
func (s *LabelSelector) Validate() error { return validateSelector("selector", s) }

// String returns the selector in Kubernetes' label-selector syntax, such
// as "app=web,tier in (a,b),!legacy"; "" for an empty selector.
func (s *LabelSelector) String() string {
	if s == nil {
		return ""
	}
	var parts []string
	keys := make([]string, 0, len(s.MatchLabels))
	for k := range s.MatchLabels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		parts = append(parts, k+"="+s.MatchLabels[k])
	}
	for _, r := range s.MatchExpressions {
		vals := slices.Clone(r.Values)
		sort.Strings(vals)
		switch r.Operator {
		case LabelSelectorOpIn:
			parts = append(parts, r.Key+" in ("+strings.Join(vals, ",")+")")
		case LabelSelectorOpNotIn:
			parts = append(parts, r.Key+" notin ("+strings.Join(vals, ",")+")")
		case LabelSelectorOpExists:
			parts = append(parts, r.Key)
		case LabelSelectorOpDoesNotExist:
			parts = append(parts, "!"+r.Key)
		default:
			parts = append(parts, r.Key+" "+string(r.Operator)+" ("+strings.Join(vals, ",")+")")
		}
	}
	return strings.Join(parts, ",")
}

// SelectorFromLabels returns a selector that matches exactly these
// labels (and any others).
func SelectorFromLabels(labels map[string]string) *LabelSelector {
	m := make(map[string]string, len(labels))
	for k, v := range labels {
		m[k] = v
	}
	return &LabelSelector{MatchLabels: m}
}

var (
	// labelNameRE is a qualified name's name part and a label value:
	// alphanumerics, '-', '_' and '.', starting and ending alphanumeric.
	labelNameRE = regexp.MustCompile(`^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$`)
	// dnsLabelRE is an RFC 1123 label.
	dnsLabelRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
)

// validateLabelKey checks a label key: [prefix/]name, where prefix is a
// DNS subdomain of at most 253 characters and name at most 63 characters
// of alphanumerics, '-', '_' and '.', starting and ending alphanumeric.
func validateLabelKey(field, key string) error {
	name := key
	if prefix, n, ok := strings.Cut(key, "/"); ok {
		name = n
		if prefix == "" || len(prefix) > 253 {
			return invalidf(field, "key %q: prefix must be a DNS subdomain of 1 to 253 characters", key)
		}
		for _, part := range strings.Split(prefix, ".") {
			if !dnsLabelRE.MatchString(part) {
				return invalidf(field, "key %q: prefix must be a DNS subdomain (lowercase alphanumerics, '-' and '.')", key)
			}
		}
	}
	if name == "" || len(name) > 63 || !labelNameRE.MatchString(name) {
		return invalidf(field, "key %q: name must be 1 to 63 alphanumerics, '-', '_' or '.', starting and ending alphanumeric", key)
	}
	return nil
}

// validateLabelValue checks a label value: empty, or at most 63
// alphanumerics, '-', '_' and '.', starting and ending alphanumeric.
func validateLabelValue(field, key, v string) error {
	if v == "" {
		return nil
	}
	if len(v) > 63 || !labelNameRE.MatchString(v) {
		return invalidf(field, "value %q of %q: must be at most 63 alphanumerics, '-', '_' or '.', starting and ending alphanumeric", v, key)
	}
	return nil
}

// validateLabels checks every key and value of l.
func validateLabels(field string, l map[string]string) error {
	keys := make([]string, 0, len(l))
	for k := range l {
		keys = append(keys, k)
	}
	sort.Strings(keys) // the same error every time
	for _, k := range keys {
		if err := validateLabelKey(field, k); err != nil {
			return err
		}
		if err := validateLabelValue(field, k, l[k]); err != nil {
			return err
		}
	}
	return nil
}

// validateSelector checks a selector; nil is valid (it matches all).
func validateSelector(field string, sel *LabelSelector) error {
	if sel == nil {
		return nil
	}
	if err := validateLabels(field+".matchLabels", sel.MatchLabels); err != nil {
		return err
	}
	for i, r := range sel.MatchExpressions {
		f := fmt.Sprintf("%s.matchExpressions[%d]", field, i)
		if err := validateLabelKey(f+".key", r.Key); err != nil {
			return err
		}
		switch r.Operator {
		case LabelSelectorOpIn, LabelSelectorOpNotIn:
			if len(r.Values) == 0 {
				return invalidf(f+".values", "operator %s needs at least one value", r.Operator)
			}
		case LabelSelectorOpExists, LabelSelectorOpDoesNotExist:
			if len(r.Values) > 0 {
				return invalidf(f+".values", "operator %s takes no values", r.Operator)
			}
		default:
			return invalidf(f+".operator", "unknown operator %q (want In, NotIn, Exists or DoesNotExist)", r.Operator)
		}
		for _, v := range r.Values {
			if err := validateLabelValue(f+".values", r.Key, v); err != nil {
				return err
			}
		}
	}
	return nil
}

// validateName checks an object or container name: a DNS label.
func validateName(field, name string) error {
	switch {
	case name == "":
		return invalidf(field, "must not be empty")
	case len(name) > 63:
		return invalidf(field, "%q is longer than 63 characters", name)
	case !dnsLabelRE.MatchString(name):
		return invalidf(field, "%q must be a DNS label: lowercase letters, digits and '-', starting and ending with a letter or digit", name)
	}
	return nil
}

// invalidf returns an error wrapping ErrInvalid that names the field.
func invalidf(field, format string, args ...any) error {
	return &FieldError{Field: field, Detail: fmt.Sprintf(format, args...)}
}

// FieldError is a validation failure of one field. It wraps ErrInvalid.
type FieldError struct {
	// Field is the path of the field, such as
	// "spec.template.spec.containers[1].name".
	Field string
	// Detail says what is wrong with it.
	Detail string
}

// Error returns "orchestrate: invalid object: FIELD: DETAIL".
func (e *FieldError) Error() string {
	return fmt.Sprintf("%v: %s: %s", ErrInvalid, e.Field, e.Detail)
}

// Unwrap returns ErrInvalid.
func (e *FieldError) Unwrap() error { return ErrInvalid }
