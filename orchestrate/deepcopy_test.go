package orchestrate

import (
	"reflect"
	"testing"
	"time"
)

// fill sets every exported field reachable from v to a value derived
// from seed: pointers allocated, slices and maps given two elements.
func fill(v reflect.Value, seed int) {
	switch v.Kind() {
	case reflect.Pointer:
		if v.Type() == reflect.TypeFor[*time.Time]() {
			t := time.Unix(int64(seed), 0)
			v.Set(reflect.ValueOf(&t))
			return
		}
		n := reflect.New(v.Type().Elem())
		fill(n.Elem(), seed)
		v.Set(n)
	case reflect.Struct:
		if v.Type() == reflect.TypeFor[time.Time]() {
			v.Set(reflect.ValueOf(time.Unix(int64(seed), 0)))
			return
		}
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				fill(v.Field(i), seed+i)
			}
		}
	case reflect.Slice:
		n := reflect.MakeSlice(v.Type(), 2, 2)
		for i := range 2 {
			fill(n.Index(i), seed+i)
		}
		v.Set(n)
	case reflect.Map:
		n := reflect.MakeMap(v.Type())
		for i := range 2 {
			k := reflect.New(v.Type().Key()).Elem()
			fill(k, seed+i)
			e := reflect.New(v.Type().Elem()).Elem()
			fill(e, seed+i)
			n.SetMapIndex(k, e)
		}
		v.Set(n)
	case reflect.String:
		v.SetString(string(rune('a'+seed%26)) + "x")
	case reflect.Bool:
		v.SetBool(seed%2 == 0)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(int64(seed%100 + 1))
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(uint64(seed%100 + 1))
	case reflect.Float32, reflect.Float64:
		v.SetFloat(float64(seed) + 0.5)
	}
}

// Every object kind's DeepCopy copies every field, and the copy shares
// nothing a caller could change: refilling every reachable field of the
// copy leaves the original as it was.
func TestDeepCopyIndependent(t *testing.T) {
	for _, obj := range []Object{&Pod{}, &ReplicaSet{}, &Deployment{}, &Job{}, &ConfigMap{}, &Secret{}} {
		t.Run(obj.Kind(), func(t *testing.T) {
			orig := reflect.New(reflect.TypeOf(obj).Elem())
			fill(orig.Elem(), 1)
			want := reflect.New(reflect.TypeOf(obj).Elem())
			fill(want.Elem(), 1)
			cp := orig.Interface().(Object).DeepCopy()
			if !reflect.DeepEqual(cp, orig.Interface()) {
				t.Fatalf("copy differs from the original:\n%+v\n%+v", cp, orig.Interface())
			}
			refill(reflect.ValueOf(cp).Elem(), 50)
			if !reflect.DeepEqual(orig.Interface(), want.Interface()) {
				t.Errorf("changing the copy changed the original:\n%+v", orig.Interface())
			}
			if reflect.DeepEqual(cp, orig.Interface()) {
				t.Error("refill changed nothing: the test checks nothing")
			}
		})
	}
}

// refill changes every reachable leaf of v in place (unlike fill, it
// keeps the pointers, slices and maps it finds, to write through them).
func refill(v reflect.Value, seed int) {
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			refill(v.Elem(), seed)
		}
	case reflect.Struct:
		if v.Type() == reflect.TypeFor[time.Time]() {
			v.Set(reflect.ValueOf(time.Unix(int64(seed)+1e6, 0)))
			return
		}
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				refill(v.Field(i), seed+i)
			}
		}
	case reflect.Slice:
		for i := range v.Len() {
			refill(v.Index(i), seed+i)
		}
	case reflect.Map:
		for _, k := range v.MapKeys() {
			e := reflect.New(v.Type().Elem()).Elem()
			e.Set(v.MapIndex(k))
			if e.Kind() == reflect.Pointer || e.Kind() == reflect.Slice || e.Kind() == reflect.Map {
				refill(e, seed) // writes through to the shared data
			} else {
				refill(e, seed)
				v.SetMapIndex(k, e)
			}
		}
	default:
		fill(v, seed)
	}
}

func BenchmarkDeepCopyPod(b *testing.B) {
	p := &Pod{}
	fill(reflect.ValueOf(p).Elem(), 1)
	b.ReportAllocs()
	for b.Loop() {
		p.DeepCopy()
	}
}
