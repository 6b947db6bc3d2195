// Package mutators holds ShareWarden's admission rules as pure functions: each takes an object
// and the facts about the cluster it depends on (gathered beforehand by the webhook) and returns
// the object to admit, or a denial that says why and what to do instead. Nothing here talks to
// the API, so every rule is tested by a table.
package mutators
