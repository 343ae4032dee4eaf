//! Scorecards: a site's own scorecards (with how many objects sit on each
//! and which partners see it), its objects, and the partners' items linked
//! into it, each with its origin site's tag (R-SHARE-6).

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::Json;
use maud::{html, Markup};
use serde::Deserialize;
use shareledger_core::catalog::SiteId;

use super::context::{params, site_page, Context};
use super::layout::{site_tag, words, Nav, Shown};
use super::session::Session;
use crate::contents::{
    self, ObjectsParams, RelationshipsParams, ScorecardsParams, SharedWithParams,
};
use crate::error::ApiError;
use crate::queries::{self, FreshParams};
use crate::state::AppState;

/// Items per list shown.
const LIMIT: u32 = 1000;

#[derive(Debug, Default, Deserialize)]
pub struct ScorecardsQuery {
    site: Option<SiteId>,
    at: Option<u64>,
}

/// `GET /scorecards`.
pub async fn page(
    State(state): State<AppState>,
    session: Session,
    Shown(flash): Shown,
    q: Result<Query<ScorecardsQuery>, QueryRejection>,
) -> Response {
    let q = match params(q) {
        Ok(q) => q,
        Err(refusal) => return refusal,
    };
    // The body borrows what the frame borrows too.
    let (state, session, q) = (&state, &session, &q);
    site_page(
        state,
        session,
        flash,
        Nav::Scorecards,
        (q.site, q.at),
        |ctx| async move {
            body(state, session, &ctx)
                .await
                .map(|markup| ("Scorecards".to_owned(), markup))
        },
    )
    .await
}

async fn body(state: &AppState, session: &Session, ctx: &Context) -> Result<Markup, ApiError> {
    let s = || State(state.clone());
    let p = || session.principal.clone();
    let site = ctx.site;
    // The answers are independent: asked at once.
    let (Json(scorecards), Json(ours), Json(theirs), Json(objects), Json(linked)) = tokio::try_join!(
        contents::scorecards(
            s(),
            p(),
            Ok(Path(site)),
            Ok(Query(ScorecardsParams {
                limit: Some(LIMIT),
                after: None,
                min_position: ctx.at,
            })),
        ),
        queries::shared_scorecards(
            s(),
            p(),
            Ok(Path(site)),
            Ok(Query(FreshParams {
                min_position: ctx.at,
            })),
        ),
        contents::shared_with(
            s(),
            p(),
            Ok(Path(site)),
            Ok(Query(SharedWithParams {
                limit: Some(LIMIT),
                after: None,
                min_position: ctx.at,
            })),
        ),
        contents::objects(
            s(),
            p(),
            Ok(Path(site)),
            Ok(Query(ObjectsParams {
                scorecard: None,
                limit: Some(LIMIT),
                after: None,
                min_position: ctx.at,
            })),
        ),
        contents::relationships(
            s(),
            p(),
            Ok(Path(site)),
            Ok(Query(RelationshipsParams {
                limit: Some(LIMIT),
                after: None,
                min_position: ctx.at,
            })),
        ),
    )?;
    Ok(html! {
        section aria-labelledby="own-h" {
            h2 #own-h { "Our scorecards" }
            div.table-wrap { table data-testid="scorecards" {
                thead { tr {
                    th scope="col" { "Scorecard" } th scope="col" { "Objects on it" }
                    th scope="col" { "Partners' objects linked in" } th scope="col" { "Shared with" }
                } }
                tbody {
                    @if scorecards.items.is_empty() { tr { td colspan="4" .empty { "No scorecard yet." } } }
                    @for sc in &scorecards.items {
                        tr {
                            td { (sc.name.as_str()) br; small.id { (sc.scorecard_id.to_string()) } }
                            td { (sc.objects) }
                            td { (sc.linked_objects) }
                            td {
                                @let partners: Vec<_> = ours.iter().filter(|p| p.scorecards.iter().any(|s| s.scorecard_id == sc.scorecard_id)).collect();
                                @if partners.is_empty() { "no one" }
                                @for p in partners { (site_tag(p.partner_code.as_str(), &p.partner_name)) " " }
                            }
                        }
                    }
                }
            } }
        }
        section aria-labelledby="objects-h" {
            h2 #objects-h { "Our objects" }
            div.table-wrap { table {
                thead { tr { th scope="col" { "Object" } th scope="col" { "Kind" } th scope="col" { "Inside" } th scope="col" { "On scorecards" } } }
                tbody {
                    @if objects.items.is_empty() { tr { td colspan="4" .empty { "No object yet." } } }
                    @for o in &objects.items {
                        tr {
                            td { (o.name.as_str()) }
                            td { (words(&o.kind)) }
                            td { @if let Some(c) = &o.container { (c.name.as_str()) } @else { "—" } }
                            td { (o.scorecards.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", ")) }
                        }
                    }
                }
            } }
        }
        section aria-labelledby="theirs-h" {
            h2 #theirs-h { "Partners' scorecards shared with us" }
            div.table-wrap { table data-testid="shared-with-us" {
                thead { tr { th scope="col" { "Scorecard" } th scope="col" { "From" } } }
                tbody {
                    @if theirs.items.is_empty() { tr { td colspan="2" .empty { "None." } } }
                    @for i in &theirs.items {
                        tr { td { (i.name.as_str()) } td { (site_tag(i.partner.code.as_str(), i.partner.name.as_str())) } }
                    }
                }
            } }
        }
        section aria-labelledby="linked-h" {
            h2 #linked-h { "Partners' items we use" }
            div.table-wrap { table {
                thead { tr { th scope="col" { "Item" } th scope="col" { "From" } th scope="col" { "Used as" } th scope="col" { "On" } } }
                tbody {
                    @if linked.items.is_empty() { tr { td colspan="4" .empty { "None." } } }
                    @for r in &linked.items {
                        tr {
                            td { (r.object.name.as_str()) " (" (words(&r.object.kind)) ")" }
                            td { (site_tag(r.origin.code.as_str(), r.origin.name.as_str())) }
                            td { (words(&r.kind)) }
                            td { (r.target.name.as_str()) }
                        }
                    }
                }
            } }
        }
    })
}
