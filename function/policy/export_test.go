package policy

import "github.com/qci-appci/qci-appci/function/login"

// Waiters reports how many callers wait for the review of id on res.
func (p *Policy) Waiters(id login.Identity, res Resource) int {
	return p.flight.Waiters(cacheKey(id, res))
}
