// Package chain is baton's canvas: Signature, Chain, Group and Chord, the JSON
// form they are written in, and the pure logic of how a finished step hands
// its result to the next. It knows nothing of Redis: the root package runs
// the actions a Plan returns.
//
// # Semantics
//
//   - Chain(a, b, c): b receives a's result, c receives b's. With no static
//     args the result is the next task's payload; with a JSON array of static
//     args it is prepended to them (Celery's partial); with a JSON object it
//     is placed beside them in the field named by Signature.ResultField
//     ("input" by default). An Immutable signature ignores the result.
//   - Group(a, b, c): members run in parallel; the group's result is the list
//     of member results in the order given. A group inside a chain receives
//     the previous result in every member. Groups directly inside groups
//     (and chord headers) are unrolled into them, as in Celery; an empty
//     group's result is [].
//   - Chord(header, body): body runs once, after every header member
//     succeeded, with the ordered list of their results ([] for an empty
//     header). A group followed by a step in a chain is the same thing.
//   - Callbacks: Link runs once after a task, chain, group or chord
//     succeeded, fed its result; OnError once when any task in it failed for
//     good, fed the ErrorInfo. Neither changes the workflow's course.
//
// Every task of a canvas gets its id when the canvas is compiled into a Plan:
// "<workflow id>.<n>", n counting tasks depth-first from 1.
package chain
