package secrets

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	vault "github.com/hashicorp/vault/api"

	"github.com/tokenwarden/tokenwarden/providers"
)

// The earlier layout kept each link's whole token at tokens/<tenant>/<link>
// and its whole grant at grants/<tenant>/<link>, both readable by one
// identity shared by the worker and the gateway. The worker moves them to
// the per-link layout (links.go): a link at a time when one of its reads
// finds nothing there (migrateLink), and all at once with MigrateLegacy
// (`tokenwarden migrate -vault`, and every worker at its start). The
// gateway's policy does not grant the earlier paths: until its link is
// moved, the gateway finds no token and answers that it has none right
// now, retryable.

func (s *Store) legacyTokenPath(tenant, link string) string {
	return s.prefix + "/tokens/" + tenant + "/" + link
}

func (s *Store) legacyGrantPath(tenant, link string) string {
	return s.prefix + "/grants/" + tenant + "/" + link
}

// migrateLink moves a link's secrets from the earlier layout, reporting
// whether there were any. The new secrets are created with check-and-set
// 0, so a link already moved (by another worker) or written anew since is
// never overwritten; the earlier secrets are destroyed only once their
// replacements are stored, so a crash midway leaves them to the next try.
// Token versions start again at 1 in the new layout: a workflow that knew
// a higher one merely refreshes once more instead of adopting.
func (s *Store) migrateLink(ctx context.Context, tenant, link string) (bool, error) {
	var tok providers.Token
	_, notes, terr := s.readFields(ctx, s.legacyTokenPath(tenant, link), &tok)
	if terr != nil && !errors.Is(terr, ErrNotFound) {
		return false, terr
	}
	var g providers.Grant
	_, gerr := s.read(ctx, s.legacyGrantPath(tenant, link), &g)
	if gerr != nil && !errors.Is(gerr, ErrNotFound) {
		return false, gerr
	}
	if terr != nil && gerr != nil {
		return false, nil
	}
	if gerr == nil {
		if err := s.moveGrant(ctx, tenant, link, g); err != nil {
			return false, err
		}
	}
	if terr == nil {
		if err := s.moveToken(ctx, tenant, link, tok, notes[noteField]); err != nil {
			return false, err
		}
	}
	for _, p := range []string{s.legacyTokenPath(tenant, link), s.legacyGrantPath(tenant, link)} {
		if err := s.destroy(ctx, p); err != nil {
			return false, err
		}
	}
	return true, nil
}

// moveGrant stores g in the new layout unless a grant is there already,
// and makes sure the request part of whichever grant is there exists.
func (s *Store) moveGrant(ctx context.Context, tenant, link string, g providers.Grant) error {
	if _, err := s.write(ctx, s.linkPath(tenant, link, partGrant), g, 0, nil); err != nil && !errors.Is(err, ErrVersionConflict) {
		return err
	}
	cur, err := s.readGrantPart(ctx, tenant, link, partGrant)
	if err != nil {
		return err
	}
	if _, err := s.write(ctx, s.linkPath(tenant, link, partRequest), requestPart(cur.Value), 0, nil); err != nil && !errors.Is(err, ErrVersionConflict) {
		return err
	}
	return nil
}

// moveToken stores t in the new layout unless a token is there already,
// and brings the access secret up to date with whichever token is there.
func (s *Store) moveToken(ctx context.Context, tenant, link string, t providers.Token, enrollment string) error {
	if _, err := s.write(ctx, s.linkPath(tenant, link, partRefresh), t, 0, map[string]string{noteField: enrollment}); err != nil && !errors.Is(err, ErrVersionConflict) {
		return err
	}
	cur, err := s.readRefresh(ctx, tenant, link)
	if err != nil {
		return err
	}
	return s.syncAccess(ctx, tenant, link, cur)
}

// Migration counts what MigrateLegacy did.
type Migration struct {
	// Moved links had secrets in the earlier layout, now in the new one.
	Moved int
	// Dropped links had secrets in the earlier layout that keep refused
	// (revoked links): destroyed, not moved.
	Dropped int
}

// MigrateLegacy moves every link's secrets from the earlier layout. keep
// (nil: keep all) decides per link; a link it refuses, such as one
// revoked while its secrets were out of the gateway's reach, has them
// destroyed instead. It is idempotent and safe beside running workers:
// see migrateLink.
func (s *Store) MigrateLegacy(ctx context.Context, keep func(ctx context.Context, tenant, link string) (bool, error)) (Migration, error) {
	var m Migration
	links, err := s.legacyLinks(ctx)
	if err != nil {
		return m, err
	}
	for _, l := range links {
		tenant, link, _ := strings.Cut(l, "/")
		ok := true
		if keep != nil {
			if ok, err = keep(ctx, tenant, link); err != nil {
				return m, fmt.Errorf("migrate link %s of tenant %s: %w", link, tenant, err)
			}
		}
		if !ok {
			for _, p := range []string{s.legacyTokenPath(tenant, link), s.legacyGrantPath(tenant, link)} {
				if err := s.destroy(ctx, p); err != nil {
					return m, err
				}
			}
			m.Dropped++
			continue
		}
		moved, err := s.migrateLink(ctx, tenant, link)
		if err != nil {
			return m, fmt.Errorf("migrate link %s of tenant %s: %w", link, tenant, err)
		}
		if moved {
			m.Moved++
		}
	}
	return m, nil
}

// legacyLinks lists "tenant/link" of every link with a secret in the
// earlier layout, sorted.
func (s *Store) legacyLinks(ctx context.Context) ([]string, error) {
	seen := map[string]bool{}
	for _, top := range []string{"tokens", "grants"} {
		tenants, err := s.list(ctx, top)
		if err != nil {
			return nil, err
		}
		for _, t := range tenants {
			if !strings.HasSuffix(t, "/") {
				continue
			}
			links, err := s.list(ctx, top+"/"+t)
			if err != nil {
				return nil, err
			}
			for _, l := range links {
				if !strings.HasSuffix(l, "/") {
					seen[t+l] = true
				}
			}
		}
	}
	out := make([]string, 0, len(seen))
	for l := range seen {
		out = append(out, l)
	}
	sort.Strings(out)
	return out, nil
}

// list returns the keys below rel (relative to the prefix); folders end
// in "/". Nothing there is no error.
func (s *Store) list(ctx context.Context, rel string) ([]string, error) {
	path := s.mount + "/metadata/" + s.prefix + "/" + strings.Trim(rel, "/")
	var sec *vault.Secret
	err := s.do(ctx, func() (err error) {
		sec, err = s.c.Logical().ListWithContext(ctx, path)
		return err
	})
	if err != nil {
		if isNotFound(err) {
			return nil, nil
		}
		return nil, classify("list "+rel, err)
	}
	if sec == nil || sec.Data == nil {
		return nil, nil
	}
	raw, _ := sec.Data["keys"].([]any)
	keys := make([]string, 0, len(raw))
	for _, k := range raw {
		if str, ok := k.(string); ok {
			keys = append(keys, str)
		}
	}
	return keys, nil
}
