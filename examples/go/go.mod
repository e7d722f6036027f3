module ferryexample

go 1.19

require github.com/ferry/ferry-go v0.0.0

// The client library from this checkout (clients/go).
replace github.com/ferry/ferry-go => ../../clients/go
