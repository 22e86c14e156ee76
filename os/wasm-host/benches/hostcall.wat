(module
  ;; Host-call round trip: `run(n)` calls testudo:device/sensor.read n times.
  (import "testudo:device/sensor@0.1.0" "read" (func $read (param i32 i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "temperature")
  (func (export "run") (param $n i32)
    (block $done
      (loop $again
        (br_if $done (i32.eqz (local.get $n)))
        (call $read (i32.const 0) (i32.const 11) (i32.const 64))
        (local.set $n (i32.sub (local.get $n) (i32.const 1)))
        (br $again))))
  (func (export "_start")))
