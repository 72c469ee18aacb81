//! Given/when/then scenarios for every rule of docs/rules.md §1 (R1–R15) and every step of the
//! decision procedure (§1.1), at the exact boundaries. Each states the exact outputs.
//!
//! Offsets are from T0 = 2026-03-02T10:00:00Z. Most scenarios run with the notifier's alarms
//! off (`quiet`), so that only the rule under test speaks; R12 turns them back on.

use ventana_core::{Channel, MessageKind, Rate, Span, Status, Tag, Timestamp};
use ventana_notifier::OutputBody;
use ventana_tests::scenario::*;

fn wa() -> Scenario {
    Scenario::whatsapp().quiet()
}
fn fb() -> Scenario {
    Scenario::messenger().quiet()
}
fn ig() -> Scenario {
    Scenario::instagram().quiet()
}

const OPENED: &str = "@+0s c1: state none->open standard ends=+24h session=1";

// ----- R1: only the customer starts -----

#[test]
fn r1_whatsapp_message_to_a_contact_who_never_wrote_is_rejected() {
    wa().check(
        &[],
        agent("a1", "+0s"),
        &["@+0s a1: failed a1 policy no_customer_message suggest=send_template"],
    );
}

#[test]
fn r1_messenger_message_to_a_contact_who_never_wrote_is_rejected() {
    fb().check(
        &[],
        bot("a1", "+0s"),
        &["@+0s a1: failed a1 policy no_customer_message suggest=send_template"],
    );
}

#[test]
fn r1_instagram_cannot_be_reached_first_at_all() {
    ig().check(
        &[],
        agent("a1", "+0s"),
        &["@+0s a1: failed a1 policy no_customer_message suggest=wait_for_customer"],
    );
}

#[test]
fn r1_a_whatsapp_template_needs_no_customer_message_and_opens_nothing() {
    wa().check(
        &[],
        bot("t1", "+0s").template(),
        &["@+0s t1: accepted t1 template ends=none"],
    );
}

#[test]
fn r1_the_rejection_detail_names_the_rule() {
    let outputs = wa().run(&[], &agent("a1", "+0s"));
    let OutputBody::DeliveryFailed { detail, .. } = &outputs[0].body else {
        panic!("{outputs:?}")
    };
    assert!(detail.starts_with("R1: "), "{detail}");
}

// ----- R2: 24 h from the customer's last message, by the platform's clock -----

#[test]
fn r2_a_customer_message_opens_a_24h_window() {
    wa().check(&[], customer("c1", "+0s"), &[OPENED]);
}

#[test]
fn r2_a_reply_at_23h59m59s_is_accepted() {
    wa().check(
        &[customer("c1", "+0s")],
        agent("a1", "+23h59m59s"),
        &[
            "@+23h59m59s a1: accepted a1 response ends=+24h",
            "@+23h59m59s a1: state open->awaiting_customer standard ends=+24h session=1",
        ],
    );
}

#[test]
fn r2_a_reply_at_exactly_24h_is_rejected_after_the_window_closes() {
    wa().check(
        &[customer("c1", "+0s")],
        agent("a1", "+24h"),
        &[
            "@+24h tick +24h: state open->expired none ends=none session=1",
            "@+24h a1: failed a1 policy window_expired suggest=send_template",
        ],
    );
}

#[test]
fn r2_the_window_runs_from_occurred_at_not_from_arrival() {
    wa().check(
        &[],
        customer("c1", "+0s").logged("+4m"),
        &["@+4m c1: state none->open standard ends=+24h session=1"],
    );
}

#[test]
fn r2_a_new_customer_message_moves_the_window_end() {
    wa().check(
        &[customer("c1", "+0s")],
        customer("c2", "+1h"),
        &["@+1h c2: state open->open standard ends=+25h session=1"],
    );
}

#[test]
fn r2_a_late_older_customer_message_never_moves_the_window_earlier() {
    wa().check(
        &[customer("c2", "+2h")],
        customer("c1", "+1h").logged("+2h1m"),
        &[],
    );
}

#[test]
fn r2_a_late_customer_message_older_than_the_answer_moves_the_end_but_does_not_reopen() {
    wa().check(
        &[customer("c1", "+0s"), agent("a1", "+1h")],
        customer("c0", "+30m").logged("+1h1m"),
        &["@+1h1m c0: state awaiting_customer->awaiting_customer standard ends=+24h30m session=1"],
    );
}

#[test]
fn r2_a_late_customer_message_with_a_later_timestamp_moves_the_window() {
    wa().check(
        &[customer("c1", "+0s"), agent("a1", "+1h")],
        customer("c2", "+1h30m").logged("+1h31m"),
        &["@+1h31m c2: state awaiting_customer->open standard ends=+25h30m session=1"],
    );
}

// ----- R3: only customer activity extends the window -----

#[test]
fn r3_an_agent_reply_does_not_extend_the_window() {
    wa().check(
        &[customer("c1", "+0s"), agent("a1", "+23h")],
        agent("a2", "+24h"),
        &[
            "@+24h tick +24h: state awaiting_customer->expired none ends=none session=1",
            "@+24h a2: failed a2 policy window_expired suggest=send_template",
        ],
    );
}

#[test]
fn r3_an_automatic_message_is_accepted_but_does_not_extend() {
    wa().check(
        &[customer("c1", "+0s")],
        bot("b1", "+1h"),
        &[
            "@+1h b1: accepted b1 response ends=+24h",
            "@+1h b1: state open->awaiting_customer standard ends=+24h session=1",
        ],
    );
}

#[test]
fn r3_a_template_neither_extends_nor_reopens() {
    wa().check(
        &[customer("c1", "+0s"), tick("+25h")],
        bot("t1", "+26h").template(),
        &["@+26h t1: accepted t1 template ends=none"],
    );
}

#[test]
fn r3_an_echo_does_not_extend_the_window() {
    wa().check(
        &[customer("c1", "+0s"), agent("e1", "+23h").echo()],
        agent("a2", "+24h"),
        &[
            "@+24h tick +24h: state awaiting_customer->expired none ends=none session=1",
            "@+24h a2: failed a2 policy window_expired suggest=send_template",
        ],
    );
}

// ----- R4: outside every window, nothing is delivered -----

#[test]
fn r4_the_detail_names_the_rule_and_the_instant_the_window_closed() {
    let outputs = wa().run(&[customer("c1", "+0s")], &agent("a1", "+30h"));
    let OutputBody::DeliveryFailed { detail, .. } = &outputs[1].body else {
        panic!("{outputs:?}")
    };
    assert_eq!(
        detail,
        "R4: the 24h standard window from the customer's last message closed at 2026-03-03T10:00:00Z, and no other window is open on whatsapp."
    );
}

#[test]
fn r4_instagram_after_the_extension_suggests_waiting() {
    ig().check(
        &[customer("c1", "+0s"), tick("+7d")],
        agent("a1", "+8d"),
        &["@+8d a1: failed a1 policy extended_window_expired suggest=wait_for_customer"],
    );
}

#[test]
fn r4_extended_window_detail_names_r7_and_the_instant() {
    let outputs = ig().run(&[customer("c1", "+0s"), tick("+7d")], &agent("a1", "+8d"));
    let OutputBody::DeliveryFailed { detail, .. } = &outputs[0].body else {
        panic!("{outputs:?}")
    };
    assert!(
        detail.starts_with("R7: ") && detail.contains("closed at 2026-03-09T10:00:00Z"),
        "{detail}"
    );
}

// ----- R5: closing -----

#[test]
fn r5_the_operator_closes_a_conversation() {
    wa().check(
        &[customer("c1", "+0s")],
        close("x1", "+1h"),
        &["@+1h x1: state open->closed none ends=none session=1"],
    );
}

#[test]
fn r5_a_message_to_a_closed_conversation_is_rejected_even_inside_the_window() {
    wa().check(
        &[customer("c1", "+0s"), close("x1", "+1h")],
        agent("a1", "+2h"),
        &["@+2h a1: failed a1 policy conversation_closed suggest=send_template"],
    );
}

#[test]
fn r5_a_template_may_still_be_sent_to_a_closed_conversation() {
    wa().check(
        &[customer("c1", "+0s"), close("x1", "+1h")],
        bot("t1", "+2h").template(),
        &["@+2h t1: accepted t1 template ends=none"],
    );
}

#[test]
fn r5_a_public_comment_reply_may_still_be_sent_to_a_closed_conversation() {
    fb().check(
        &[comment("k1", "cm1", "+0s"), close("x1", "+1h")],
        agent("r1", "+2h")
            .kind(MessageKind::CommentReply)
            .on_comment("cm1"),
        &["@+2h r1: accepted r1 comment_reply comment=cm1 ends=none"],
    );
}

#[test]
fn r5_new_customer_activity_reopens_with_a_fresh_window_and_a_new_session() {
    wa().check(
        &[customer("c1", "+0s"), close("x1", "+1h")],
        customer("c2", "+2h"),
        &["@+2h c2: state closed->open standard ends=+26h session=2"],
    );
}

#[test]
fn r5_the_operator_can_reopen_within_the_window_without_a_new_session() {
    wa().check(
        &[customer("c1", "+0s"), close("x1", "+1h")],
        reopen("o1", "+2h"),
        &["@+2h o1: state closed->open standard ends=+24h session=1"],
    );
}

#[test]
fn r5_closing_a_conversation_nobody_started_changes_nothing() {
    wa().check(&[], close("x1", "+0s"), &[]);
}

// ----- R6: WhatsApp -----

#[test]
fn r6_whatsapp_templates_may_be_sent_at_any_time() {
    wa().check(
        &[customer("c1", "+0s"), tick("+30d")],
        bot("t1", "+30d1s").template(),
        &["@+30d1s t1: accepted t1 template ends=none"],
    );
}

#[test]
fn r6_whatsapp_has_no_human_agent_extension() {
    wa().check(
        &[customer("c1", "+0s"), tick("+24h")],
        agent("a1", "+25h").tag(Tag::HumanAgent),
        &["@+25h a1: failed a1 policy window_expired suggest=send_template"],
    );
}

// ----- R7: Messenger and Instagram human-agent extension -----

#[test]
fn r7_a_human_agent_at_24h_is_accepted_with_the_human_agent_tag() {
    fb().check(
        &[customer("c1", "+0s")],
        agent("a1", "+24h"),
        &[
            "@+24h tick +24h: state open->extended_window human_agent ends=+7d session=1",
            "@+24h a1: accepted a1 message_tag tag=human_agent ends=+7d",
        ],
    );
}

#[test]
fn r7_a_human_agent_at_7d_minus_1s_is_accepted() {
    ig().check(
        &[customer("c1", "+0s"), tick("+24h")],
        agent("a1", "+6d23h59m59s"),
        &["@+6d23h59m59s a1: accepted a1 message_tag tag=human_agent ends=+7d"],
    );
}

#[test]
fn r7_a_human_agent_at_exactly_7d_is_rejected() {
    fb().check(
        &[customer("c1", "+0s"), tick("+24h")],
        agent("a1", "+7d"),
        &[
            "@+7d tick +7d: state extended_window->expired none ends=none session=1",
            "@+7d a1: failed a1 policy extended_window_expired suggest=send_template",
        ],
    );
}

#[test]
fn r7_inside_24h_the_message_goes_untagged_whatever_tag_was_asked() {
    fb().check(
        &[customer("c1", "+0s")],
        agent("a1", "+1h").tag(Tag::HumanAgent),
        &[
            "@+1h a1: accepted a1 response ends=+24h",
            "@+1h a1: state open->awaiting_customer standard ends=+24h session=1",
        ],
    );
}

#[test]
fn r7_automation_in_the_extension_is_rejected() {
    fb().check(
        &[customer("c1", "+0s"), tick("+24h")],
        bot("b1", "+25h"),
        &["@+25h b1: failed b1 policy human_agent_requires_human suggest=use_human_agent"],
    );
}

#[test]
fn r7_automation_asking_for_human_agent_is_still_rejected() {
    ig().check(
        &[customer("c1", "+0s"), tick("+24h")],
        bot("b1", "+25h").tag(Tag::HumanAgent),
        &["@+25h b1: failed b1 policy human_agent_requires_human suggest=use_human_agent"],
    );
}

#[test]
fn r7_automation_with_another_valid_tag_is_accepted_in_the_extension() {
    fb().check(
        &[customer("c1", "+0s"), tick("+24h")],
        bot("b1", "+25h").tag(Tag::AccountUpdate),
        &["@+25h b1: accepted b1 message_tag tag=account_update ends=none"],
    );
}

#[test]
fn r7_the_extension_can_be_turned_off() {
    fb().with(|p| p.messenger.human_agent_window = Span::ZERO)
        .check(
            &[customer("c1", "+0s")],
            agent("a1", "+25h"),
            &[
                "@+24h tick +24h: state open->expired none ends=none session=1",
                "@+25h a1: failed a1 policy window_expired suggest=send_template",
            ],
        );
}

#[test]
fn r7_an_instagram_agent_answers_on_day_three() {
    ig().check(
        &[customer("c1", "+0s"), tick("+24h")],
        agent("a1", "+3d"),
        &["@+3d a1: accepted a1 message_tag tag=human_agent ends=+7d"],
    );
}

#[test]
fn r7_answering_in_the_extension_keeps_the_extended_state() {
    fb().check(
        &[customer("c1", "+0s"), tick("+24h"), agent("a1", "+2d")],
        tick("+7d"),
        &["@+7d tick +7d: state extended_window->expired none ends=none session=1"],
    );
}

// ----- R8: Messenger tags and utility templates -----

#[test]
fn r8_a_tag_is_accepted_outside_every_window_while_valid() {
    fb().check(
        &[customer("c1", "+0s"), tick("+8d")],
        bot("b1", "+9d").tag(Tag::PostPurchaseUpdate),
        &["@+9d b1: accepted b1 message_tag tag=post_purchase_update ends=none"],
    );
}

#[test]
fn r8_tags_end_on_2026_04_27() {
    // T0 + 60 d is 2026-05-01, after the deprecation; the extension closed at +57d.
    fb().check(
        &[customer("c1", "+50d"), tick("+58d")],
        bot("b1", "+60d").tag(Tag::ConfirmedEventUpdate),
        &["@+60d b1: failed b1 policy tag_not_allowed suggest=send_template"],
    );
}

#[test]
fn r8_the_last_second_before_the_deprecation_is_allowed() {
    let until = Timestamp::parse_rfc3339("2026-04-27T00:00:00Z").unwrap();
    let last = ventana_tests::scenario::show_instant(until.minus(Span::from_seconds(1)));
    fb().check(
        &[customer("c1", "+0s"), tick("+8d")],
        bot("b1", &last).tag(Tag::AccountUpdate),
        &[&format!(
            "@{last} b1: accepted b1 message_tag tag=account_update ends=none"
        )],
    );
}

#[test]
fn r8_a_tag_not_in_the_policy_is_not_allowed() {
    wa().check(
        &[customer("c1", "+0s"), tick("+25h")],
        bot("b1", "+26h").tag(Tag::AccountUpdate),
        &["@+26h b1: failed b1 policy tag_not_allowed suggest=send_template"],
    );
}

#[test]
fn r8_a_tag_is_not_valid_before_its_valid_from() {
    fb().with(|p| p.messenger.tags[0].valid_from = Some(at("+30d")))
        .check(
            &[customer("c1", "+0s"), tick("+8d")],
            bot("b1", "+9d").tag(Tag::AccountUpdate),
            &["@+9d b1: failed b1 policy tag_not_allowed suggest=send_template"],
        );
}

#[test]
fn r8_messenger_utility_templates_are_allowed_outside_the_window() {
    fb().check(
        &[customer("c1", "+0s"), tick("+8d")],
        bot("t1", "+9d").template(),
        &["@+9d t1: accepted t1 template ends=none"],
    );
}

#[test]
fn r8_messenger_templates_can_be_turned_off() {
    fb().with(|p| p.messenger.utility_templates = false).check(
        &[customer("c1", "+0s")],
        bot("t1", "+1h").template(),
        &["@+1h t1: failed t1 policy template_not_supported suggest=wait_for_customer"],
    );
}

#[test]
fn r8_instagram_has_no_templates() {
    ig().check(
        &[customer("c1", "+0s")],
        bot("t1", "+1h").template(),
        &["@+1h t1: failed t1 policy template_not_supported suggest=wait_for_customer"],
    );
}

// ----- R9: rate limits -----

fn human_agent_once_a_day() -> Scenario {
    fb().with(|p| {
        p.messenger.human_agent_rate = Some(Rate {
            count: 1,
            per: Span::from_hours(24),
        })
    })
}

#[test]
fn r9_a_second_human_agent_message_within_the_period_is_limited() {
    human_agent_once_a_day().check(
        &[customer("c1", "+0s"), agent("a1", "+25h")],
        agent("a2", "+30h"),
        &["@+30h a2: failed a2 policy tag_rate_limited suggest=send_template"],
    );
}

#[test]
fn r9_the_next_period_allows_another() {
    human_agent_once_a_day().check(
        &[customer("c1", "+0s"), agent("a1", "+25h")],
        agent("a2", "+49h"),
        &["@+2d1h a2: accepted a2 message_tag tag=human_agent ends=+7d"],
    );
}

fn account_update_once_a_day() -> Scenario {
    fb().with(|p| {
        p.messenger.tags[0].rate = Some(Rate {
            count: 1,
            per: Span::from_hours(24),
        })
    })
}

#[test]
fn r9_a_tag_rate_limits_that_tag() {
    account_update_once_a_day().check(
        &[
            customer("c1", "+0s"),
            tick("+8d"),
            bot("b1", "+9d").tag(Tag::AccountUpdate),
        ],
        bot("b2", "+9d1h").tag(Tag::AccountUpdate),
        &["@+9d1h b2: failed b2 policy tag_rate_limited suggest=send_template"],
    );
}

#[test]
fn r9_rates_are_off_by_default() {
    fb().check(
        &[customer("c1", "+0s"), agent("a1", "+25h")],
        agent("a2", "+26h"),
        &["@+26h a2: accepted a2 message_tag tag=human_agent ends=+7d"],
    );
}

// ----- R10: public comment replies -----

#[test]
fn r10_a_comment_reply_is_allowed_without_any_customer_activity() {
    fb().check(
        &[],
        agent("r1", "+0s")
            .kind(MessageKind::CommentReply)
            .on_comment("cm1"),
        &["@+0s r1: accepted r1 comment_reply comment=cm1 ends=none"],
    );
}

#[test]
fn r10_a_comment_reply_does_not_answer_the_customer() {
    ig().check(
        &[customer("c1", "+0s")],
        agent("r1", "+1h")
            .kind(MessageKind::CommentReply)
            .on_comment("cm1"),
        &["@+1h r1: accepted r1 comment_reply comment=cm1 ends=none"],
    );
}

#[test]
fn r10_any_number_of_comment_replies_at_any_time() {
    let reply = |id: &str, t: &str| bot(id, t).kind(MessageKind::CommentReply).on_comment("cm1");
    fb().check(
        &[
            comment("k1", "cm1", "+0s"),
            reply("r1", "+1h"),
            reply("r2", "+2h"),
            tick("+30d"),
        ],
        reply("r3", "+31d"),
        &["@+31d r3: accepted r3 comment_reply comment=cm1 ends=none"],
    );
}

// ----- R11: one private reply per comment -----

#[test]
fn r11_a_comment_allows_a_private_reply_for_7_days() {
    ig().check(
        &[],
        comment("k1", "cm1", "+0s"),
        &["@+0s k1: state none->open private_reply ends=+7d session=1"],
    );
}

#[test]
fn r11_a_free_form_dm_becomes_the_private_reply() {
    ig().check(
        &[comment("k1", "cm1", "+0s")],
        agent("a1", "+1h"),
        &[
            "@+1h a1: accepted a1 private_reply comment=cm1 ends=+7d",
            "@+1h a1: state open->awaiting_customer private_reply ends=+7d session=1",
        ],
    );
}

#[test]
fn r11_further_dms_await_the_customer() {
    ig().check(
        &[comment("k1", "cm1", "+0s"), agent("a1", "+1h")],
        agent("a2", "+2h"),
        &["@+2h a2: failed a2 policy awaiting_customer_acceptance suggest=wait_for_customer"],
    );
}

#[test]
fn r11_an_explicit_private_reply_names_its_comment() {
    fb().check(
        &[comment("k1", "cm1", "+0s")],
        agent("p1", "+6d23h59m59s")
            .kind(MessageKind::PrivateReply)
            .on_comment("cm1"),
        &[
            "@+6d23h59m59s p1: accepted p1 private_reply comment=cm1 ends=+7d",
            "@+6d23h59m59s p1: state open->awaiting_customer private_reply ends=+7d session=1",
        ],
    );
}

#[test]
fn r11_a_used_private_reply_cannot_be_sent_again() {
    let reply = |id: &str, t: &str| {
        agent(id, t)
            .kind(MessageKind::PrivateReply)
            .on_comment("cm1")
    };
    fb().check(
        &[comment("k1", "cm1", "+0s"), reply("p1", "+1h")],
        reply("p2", "+2h"),
        &["@+2h p2: failed p2 policy private_reply_used suggest=send_template"],
    );
}

#[test]
fn r11_a_private_reply_at_exactly_7d_has_expired() {
    ig().check(
        &[comment("k1", "cm1", "+0s")],
        agent("p1", "+7d")
            .kind(MessageKind::PrivateReply)
            .on_comment("cm1"),
        &[
            "@+7d tick +7d: state open->expired none ends=none session=1",
            "@+7d p1: failed p1 policy private_reply_expired suggest=wait_for_customer",
        ],
    );
}

#[test]
fn r11_a_private_reply_to_an_unknown_comment_has_no_customer_message() {
    ig().check(
        &[comment("k1", "cm1", "+0s")],
        agent("p1", "+1h")
            .kind(MessageKind::PrivateReply)
            .on_comment("cm9"),
        &["@+1h p1: failed p1 policy no_customer_message suggest=wait_for_customer"],
    );
}

#[test]
fn r11_the_oldest_unused_comment_is_answered_first() {
    ig().check(
        &[comment("k1", "cm1", "+0s"), comment("k2", "cm2", "+1h")],
        agent("a1", "+2h"),
        &["@+2h a1: accepted a1 private_reply comment=cm1 ends=+7d"],
    );
}

fn holding() -> Scenario {
    ig().with(|p| p.instagram.hold_until_accepted = true)
}

#[test]
fn r11_with_holds_a_further_dm_is_held_until_the_allowance_ends() {
    holding().check(
        &[comment("k1", "cm1", "+0s"), agent("a1", "+1h")],
        agent("a2", "+2h"),
        &["@+2h a2: held a2 until=+7d"],
    );
}

#[test]
fn r11_a_held_message_is_released_when_the_customer_writes() {
    holding().check(
        &[
            comment("k1", "cm1", "+0s"),
            agent("a1", "+1h"),
            agent("a2", "+2h"),
        ],
        customer("c1", "+3h"),
        &[
            "@+3h c1: accepted a2 response ends=+27h",
            "@+3h c1: state awaiting_customer->awaiting_customer standard ends=+27h session=1",
        ],
    );
}

#[test]
fn r11_a_held_message_fails_when_the_allowance_ends() {
    holding().check(
        &[
            comment("k1", "cm1", "+0s"),
            agent("a1", "+1h"),
            agent("a2", "+2h"),
        ],
        tick("+7d"),
        &[
            "@+7d tick +7d: failed a2 policy hold_expired suggest=wait_for_customer",
            "@+7d tick +7d: state awaiting_customer->expired none ends=none session=1",
        ],
    );
}

#[test]
fn r11_a_customer_dm_after_a_comment_opens_the_standard_window() {
    ig().check(
        &[comment("k1", "cm1", "+0s"), agent("a1", "+1h")],
        customer("c1", "+2h"),
        &["@+2h c1: state awaiting_customer->open standard ends=+26h session=1"],
    );
}

// ----- R12: auto-replies and warnings -----

fn alarms() -> Scenario {
    Scenario::whatsapp()
}

#[test]
fn r12_a_customer_left_waiting_gets_an_agent_delayed_auto_reply() {
    alarms().check(
        &[customer("c1", "+0s")],
        tick("+15m"),
        &["@+15m tick +15m: auto_reply agent_delayed reply_by=+24h"],
    );
}

#[test]
fn r12_no_agent_delayed_auto_reply_once_answered() {
    alarms().check(
        &[customer("c1", "+0s"), agent("a1", "+10m")],
        tick("+1h"),
        &[],
    );
}

#[test]
fn r12_agent_delayed_comes_once_per_unanswered_stretch() {
    alarms().check(
        &[customer("c1", "+0s"), tick("+15m"), customer("c2", "+20m")],
        tick("+1h"),
        &[],
    );
}

#[test]
fn r12_a_new_unanswered_stretch_gets_its_own_auto_reply() {
    alarms().check(
        &[
            customer("c1", "+0s"),
            agent("a1", "+5m"),
            customer("c2", "+1h"),
        ],
        tick("+1h15m"),
        &["@+1h15m tick +1h15m: auto_reply agent_delayed reply_by=+25h"],
    );
}

#[test]
fn r12_an_alarm_already_past_when_created_never_fires() {
    alarms().check(&[customer("c1", "+0s").logged("+20m")], tick("+1h"), &[]);
}

#[test]
fn r12_operators_are_warned_an_hour_before_the_window_closes() {
    alarms().check(
        &[customer("c1", "+0s"), agent("a1", "+10m")],
        tick("+23h"),
        &["@+23h tick +23h: window_closing closes=+24h waiting=false"],
    );
}

#[test]
fn r12_the_customer_can_be_reminded_too() {
    alarms().with(|p| p.notifier.remind_customer = true).check(
        &[customer("c1", "+0s"), tick("+15m")],
        tick("+23h"),
        &[
            "@+23h tick +23h: window_closing closes=+24h waiting=true",
            "@+23h tick +23h: auto_reply window_closing reply_by=+24h",
        ],
    );
}

#[test]
fn r12_no_warning_for_a_closed_conversation() {
    alarms().check(
        &[
            customer("c1", "+0s"),
            agent("a1", "+10m"),
            close("x1", "+1h"),
        ],
        tick("+24h"),
        &[],
    );
}

#[test]
fn r12_every_new_session_can_be_greeted() {
    alarms().with(|p| p.notifier.greet_on_open = true).check(
        &[],
        customer("c1", "+0s"),
        &[
            OPENED,
            "@+0s c1: auto_reply conversation_opened reply_by=+24h",
        ],
    );
}

#[test]
fn r12_alarms_can_be_turned_off() {
    wa().check(&[customer("c1", "+0s")], tick("+23h30m"), &[]);
}

#[test]
fn r12_outputs_of_one_tick_come_in_contract_order() {
    alarms()
        .with(|p| {
            p.notifier.agent_delay = Span::from_hours(23);
            p.notifier.remind_customer = true;
        })
        .check(
            &[customer("c1", "+0s")],
            tick("+23h"),
            &[
                "@+23h tick +23h: window_closing closes=+24h waiting=true",
                "@+23h tick +23h: auto_reply window_closing reply_by=+24h",
                "@+23h tick +23h: auto_reply agent_delayed reply_by=+24h",
            ],
        );
}

// ----- R13: platform delivery reports -----

#[test]
fn r13_a_failed_status_is_published() {
    wa().check(
        &[customer("c1", "+0s"), agent("a1", "+1h")],
        status("s1", "a1", Status::Failed, "+1h1m").error(100, None),
        &["@+1h1m s1: failed a1 platform platform_error suggest=none error=100"],
    );
}

#[test]
fn r13_whatsapp_131047_ends_the_window_at_the_message_decision_time() {
    wa().check(
        &[customer("c1", "+0s"), agent("a1", "+1h")],
        status("s1", "a1", Status::Failed, "+1h1m").error(131_047, None),
        &[
            "@+1h1m s1: failed a1 platform window_expired suggest=send_template error=131047",
            "@+1h1m s1: state awaiting_customer->expired none ends=none session=1",
        ],
    );
}

#[test]
fn r13_after_a_window_error_free_form_is_rejected_at_the_cut() {
    let outputs = wa().run(
        &[
            customer("c1", "+0s"),
            agent("a1", "+1h"),
            status("s1", "a1", Status::Failed, "+1h1m").error(131_047, None),
        ],
        &agent("a2", "+2h"),
    );
    let shown: Vec<String> = outputs.iter().map(show).collect();
    assert_eq!(
        shown,
        ["@+2h a2: failed a2 policy window_expired suggest=send_template"]
    );
    let OutputBody::DeliveryFailed { detail, .. } = &outputs[0].body else {
        unreachable!()
    };
    assert!(
        detail.contains("closed at 2026-03-02T11:00:00Z"),
        "{detail}"
    );
}

#[test]
fn r13_messenger_code_10_ends_the_window_and_the_extension() {
    fb().check(
        &[customer("c1", "+0s"), agent("a1", "+1h")],
        status("s1", "a1", Status::Failed, "+1h1m").error(10, Some(2_018_278)),
        &[
            "@+1h1m s1: failed a1 platform window_expired suggest=send_template error=10",
            "@+1h1m s1: state awaiting_customer->expired none ends=none session=1",
        ],
    );
}

#[test]
fn r13_instagram_subcode_2534022_is_a_window_error_too() {
    ig().check(
        &[customer("c1", "+0s"), agent("a1", "+1h")],
        status("s1", "a1", Status::Failed, "+1h1m").error(10, Some(2_534_022)),
        &[
            "@+1h1m s1: failed a1 platform window_expired suggest=wait_for_customer error=10",
            "@+1h1m s1: state awaiting_customer->expired none ends=none session=1",
        ],
    );
}

#[test]
fn r13_code_10_with_another_subcode_is_only_a_platform_error() {
    fb().check(
        &[customer("c1", "+0s"), agent("a1", "+1h")],
        status("s1", "a1", Status::Failed, "+1h1m").error(10, Some(1)),
        &["@+1h1m s1: failed a1 platform platform_error suggest=none error=10"],
    );
}

#[test]
fn r13_recipient_unavailable_changes_no_state() {
    wa().check(
        &[customer("c1", "+0s"), agent("a1", "+1h")],
        status("s1", "a1", Status::Failed, "+1h1m").error(551, None),
        &["@+1h1m s1: failed a1 platform recipient_unavailable suggest=none error=551"],
    );
}

#[test]
fn r13_statuses_only_move_forward() {
    wa().check(
        &[
            customer("c1", "+0s"),
            agent("a1", "+1h"),
            status("s1", "a1", Status::Read, "+1h1m"),
        ],
        status("s2", "a1", Status::Delivered, "+1h2m"),
        &[],
    );
}

#[test]
fn r13_failed_is_terminal() {
    wa().check(
        &[
            customer("c1", "+0s"),
            agent("a1", "+1h"),
            status("s1", "a1", Status::Failed, "+1h1m").error(100, None),
        ],
        status("s2", "a1", Status::Failed, "+1h2m").error(100, None),
        &[],
    );
}

#[test]
fn r13_new_customer_activity_lifts_the_platform_cut() {
    wa().check(
        &[
            customer("c1", "+0s"),
            agent("a1", "+1h"),
            status("s1", "a1", Status::Failed, "+1h1m").error(131_047, None),
        ],
        customer("c2", "+3h"),
        &["@+3h c2: state expired->open standard ends=+27h session=2"],
    );
}

// ----- R14: duplicates -----

#[test]
fn r14_a_duplicate_customer_message_changes_nothing() {
    wa().check(&[customer("c1", "+0s")], customer("c1", "+0s"), &[]);
}

#[test]
fn r14_a_duplicate_outbound_message_is_not_decided_twice() {
    wa().check(
        &[customer("c1", "+0s"), agent("a1", "+1h")],
        agent("a1", "+1h"),
        &[],
    );
}

#[test]
fn r14_a_duplicate_arriving_later_does_not_even_let_time_pass() {
    wa().check(
        &[customer("c1", "+0s")],
        customer("c1", "+0s").logged("+25h"),
        &[],
    );
}

#[test]
fn r14_an_id_is_forgotten_after_7_days() {
    wa().check(
        &[customer("c1", "+0s")],
        customer("c1", "+7d"),
        &[
            "@+24h tick +24h: state open->expired none ends=none session=1",
            "@+7d c1: state expired->open standard ends=+8d session=2",
        ],
    );
}

// ----- R15: echoes -----

#[test]
fn r15_an_echo_answers_the_customer() {
    wa().check(
        &[customer("c1", "+0s")],
        agent("e1", "+1h").echo(),
        &["@+1h e1: state open->awaiting_customer standard ends=+24h session=1"],
    );
}

#[test]
fn r15_an_echo_is_never_decided_even_outside_the_window() {
    wa().check(
        &[customer("c1", "+0s"), tick("+25h")],
        agent("e1", "+26h").echo(),
        &[],
    );
}

#[test]
fn r15_an_echoed_private_reply_uses_the_allowance() {
    ig().check(
        &[
            comment("k1", "cm1", "+0s"),
            agent("e1", "+1h")
                .kind(MessageKind::PrivateReply)
                .on_comment("cm1")
                .echo(),
        ],
        agent("a2", "+2h"),
        &["@+2h a2: failed a2 policy awaiting_customer_acceptance suggest=wait_for_customer"],
    );
}

// ----- §1.1 and §1.2: the procedure's order and the derived state -----

#[test]
fn step1_comment_replies_come_before_everything_even_on_whatsapp() {
    wa().check(
        &[],
        agent("r1", "+0s").kind(MessageKind::CommentReply),
        &["@+0s r1: accepted r1 comment_reply ends=none"],
    );
}

#[test]
fn step5_4_a_valid_tag_is_used_before_a_private_reply_allowance() {
    fb().check(
        &[comment("k1", "cm1", "+0s")],
        bot("b1", "+1h").tag(Tag::AccountUpdate),
        &["@+1h b1: accepted b1 message_tag tag=account_update ends=none"],
    );
}

#[test]
fn step5_4_an_invalid_tag_is_refused_before_a_private_reply_allowance_is_used() {
    fb().check(
        &[comment("k1", "cm1", "+60d")],
        bot("b1", "+61d").tag(Tag::AccountUpdate),
        &["@+61d b1: failed b1 policy tag_not_allowed suggest=send_template"],
    );
}

#[test]
fn step5_7_without_any_dm_an_expired_comment_is_window_expired() {
    ig().check(
        &[comment("k1", "cm1", "+0s")],
        agent("a1", "+8d"),
        &[
            "@+7d tick +7d: state open->expired none ends=none session=1",
            "@+8d a1: failed a1 policy window_expired suggest=wait_for_customer",
        ],
    );
}

#[test]
fn custom_channels_have_no_window() {
    let custom = Scenario::on(Channel::Custom("sms".into())).quiet();
    custom.check(
        &[customer("c1", "+0s"), tick("+30d")],
        agent("a1", "+30d1s"),
        &[
            "@+30d1s a1: accepted a1 response ends=none",
            "@+30d1s a1: state open->awaiting_customer unrestricted ends=none session=1",
        ],
    );
}

#[test]
fn custom_channels_have_no_templates() {
    let custom = Scenario::on(Channel::Custom("sms".into())).quiet();
    custom.check(
        &[customer("c1", "+0s")],
        bot("t1", "+1h").template(),
        &["@+1h t1: failed t1 policy template_not_supported suggest=wait_for_customer"],
    );
}

#[test]
fn the_clock_never_goes_back() {
    wa().check(
        &[customer("c1", "+0s"), tick("+25h")],
        agent("a1", "+1h"),
        &["@+25h a1: failed a1 policy window_expired suggest=send_template"],
    );
}

#[test]
fn deadlines_fire_in_time_order_before_the_event() {
    Scenario::whatsapp().check(
        &[customer("c1", "+0s")],
        agent("a1", "+25h"),
        &[
            "@+15m tick +15m: auto_reply agent_delayed reply_by=+24h",
            "@+23h tick +23h: window_closing closes=+24h waiting=true",
            "@+24h tick +24h: state open->expired none ends=none session=1",
            "@+25h a1: failed a1 policy window_expired suggest=send_template",
        ],
    );
}

#[test]
fn an_event_too_far_in_the_future_is_invalid() {
    let mut fold = ventana_notifier::Fold::new(ventana_core::Policy::default());
    let scenario = wa();
    let event = customer("c1", "+6m").logged("+0s").build(&scenario.key);
    let error = fold.apply(&event, &mut Vec::new()).unwrap_err();
    assert!(error.to_string().contains("clock skew"), "{error}");
    let event = customer("c1", "+5m").logged("+0s").build(&scenario.key);
    assert!(fold.apply(&event, &mut Vec::new()).is_ok());
}

// ----- §1.4: the settled readings (revision 3) -----

/// The snapshot's `allowed`, as printed, after folding `given`.
fn allowed_after(scenario: &Scenario, given: &[E]) -> Vec<&'static str> {
    let mut fold = ventana_notifier::Fold::new(scenario.policy.clone());
    for e in given {
        fold.apply(&e.build(&scenario.key), &mut Vec::new())
            .unwrap_or_else(|invalid| panic!("given {e:?}: {invalid}"));
    }
    let conversation = fold.conversation(&scenario.key).expect("folded");
    conversation
        .allowed(&scenario.policy)
        .into_iter()
        .map(|a| a.as_str())
        .collect()
}

fn detail_of(output: &ventana_notifier::Output) -> &str {
    match &output.body {
        OutputBody::DeliveryFailed { detail, .. } => detail,
        other => panic!("not a delivery_failed: {other:?}"),
    }
}

#[test]
fn s1_4_1_a_new_session_starts_a_new_unanswered_stretch() {
    alarms().check(
        &[customer("c1", "+0s"), tick("+15m"), customer("c2", "+2d")],
        tick("+2d20m"),
        &["@+2d15m tick +2d15m: auto_reply agent_delayed reply_by=+3d"],
    );
}

#[test]
fn s1_4_2_agent_delay_fires_on_custom_channels_without_a_reply_by() {
    Scenario::on(Channel::Custom("webchat".into())).check(
        &[customer("c1", "+0s")],
        agent("a1", "+30m"),
        &[
            "@+15m tick +15m: auto_reply agent_delayed reply_by=none",
            "@+30m a1: accepted a1 response ends=none",
            "@+30m a1: state open->awaiting_customer unrestricted ends=none session=1",
        ],
    );
}

#[test]
fn s1_4_3_an_answer_that_leaves_the_customer_unanswered_keeps_the_alarm() {
    // The customer's message is dated 3 minutes after it was logged (within the skew);
    // the answer at +1m comes before it, so the customer is still waiting.
    alarms().check(
        &[customer("c1", "+3m").logged("+0s"), agent("a1", "+1m")],
        tick("+20m"),
        &["@+18m tick +18m: auto_reply agent_delayed reply_by=+24h3m"],
    );
}

#[test]
fn s1_4_4_a_window_error_for_an_old_message_cuts_at_its_decision_not_later() {
    let given = [
        customer("c1", "+0s"),
        agent("o1", "+5m"),
        customer("c2", "+8d"),
    ];
    let outputs = wa().run(
        &given,
        &status("s1", "o1", Status::Failed, "+8d10m").error(131_047, None),
    );
    let shown: Vec<String> = outputs.iter().map(show).collect();
    assert_eq!(
        shown,
        ["@+8d10m s1: failed o1 platform window_expired suggest=send_template error=131047"]
    );
    assert!(
        detail_of(&outputs[0]).contains("closed at 2026-03-02T10:05:00Z"),
        "{}",
        detail_of(&outputs[0])
    );
    let mut given = given.to_vec();
    given.push(status("s1", "o1", Status::Failed, "+8d10m").error(131_047, None));
    wa().check(
        &given,
        agent("o2", "+8d12m"),
        &[
            "@+8d12m o2: accepted o2 response ends=+9d",
            "@+8d12m o2: state open->awaiting_customer standard ends=+9d session=2",
        ],
    );
}

#[test]
fn s1_4_4_failed_stays_terminal_for_a_message_decided_long_ago() {
    wa().check(
        &[
            customer("c1", "+0s"),
            agent("o1", "+5m"),
            status("s1", "o1", Status::Failed, "+1h").error(100, None),
        ],
        status("s2", "o1", Status::Failed, "+8d").error(100, None),
        &["@+24h tick +24h: state awaiting_customer->expired none ends=none session=1"],
    );
}

#[test]
fn s1_4_4_a_comment_reported_again_after_weeks_opens_no_second_allowance() {
    let given = [
        comment("k1", "cm1", "+0s"),
        agent("p1", "+1h")
            .kind(MessageKind::PrivateReply)
            .on_comment("cm1"),
        tick("+8d"),
    ];
    ig().check(&given, comment("k2", "cm1", "+15d"), &[]);
    let mut given = given.to_vec();
    given.push(comment("k2", "cm1", "+15d"));
    ig().check(
        &given,
        agent("p2", "+15d1m")
            .kind(MessageKind::PrivateReply)
            .on_comment("cm1"),
        &["@+15d1m p2: failed p2 policy private_reply_used suggest=wait_for_customer"],
    );
}

#[test]
fn s1_4_4_a_late_private_reply_to_an_old_comment_has_expired() {
    ig().check(
        &[comment("k1", "cm1", "+0s"), tick("+8d")],
        agent("p1", "+15d")
            .kind(MessageKind::PrivateReply)
            .on_comment("cm1"),
        &["@+15d p1: failed p1 policy private_reply_expired suggest=wait_for_customer"],
    );
}

#[test]
fn s1_4_4_the_last_64_messages_are_remembered_however_old() {
    // 64 answers over 64 days, then a window error for the first of them: it is still
    // judged by its own decision (long before the open window), so nothing is cut.
    let mut given = Vec::new();
    for day in 0..64 {
        given.push(customer(&format!("c{day}"), &format!("+{day}d")));
        given.push(agent(&format!("a{day}"), &format!("+{day}d1m")));
    }
    given.push(customer("c-last", "+64d"));
    wa().check(
        &given,
        status("s1", "a0", Status::Failed, "+64d1m").error(131_047, None),
        &["@+64d1m s1: failed a0 platform window_expired suggest=send_template error=131047"],
    );
}

#[test]
fn s1_4_5_a_message_never_decided_is_cut_at_its_first_status() {
    let outputs = wa().run(
        &[
            customer("c1", "+0s"),
            status("s1", "x1", Status::Delivered, "+1h"),
        ],
        &status("s2", "x1", Status::Failed, "+3h").error(131_047, None),
    );
    let shown: Vec<String> = outputs.iter().map(show).collect();
    assert_eq!(
        shown,
        [
            "@+3h s2: failed x1 platform window_expired suggest=send_template error=131047",
            "@+3h s2: state open->expired none ends=none session=1",
        ]
    );
    assert!(
        detail_of(&outputs[0]).contains("closed at 2026-03-02T11:00:00Z"),
        "{}",
        detail_of(&outputs[0])
    );
}

#[test]
fn s1_4_6_an_echoed_dm_uses_the_private_reply_allowance() {
    let given = [comment("k1", "cm1", "+0s")];
    ig().check(
        &given,
        agent("e1", "+1h").echo(),
        &["@+1h e1: state open->awaiting_customer private_reply ends=+7d session=1"],
    );
    ig().check(
        &[given[0].clone(), agent("e1", "+1h").echo()],
        agent("a2", "+2h"),
        &["@+2h a2: failed a2 policy awaiting_customer_acceptance suggest=wait_for_customer"],
    );
}

#[test]
fn s1_4_6_an_echoed_tagged_message_counts_toward_the_tag_rate() {
    account_update_once_a_day().check(
        &[
            customer("c1", "+0s"),
            tick("+8d"),
            bot("e1", "+9d").tag(Tag::AccountUpdate).echo(),
        ],
        bot("b2", "+9d1h").tag(Tag::AccountUpdate),
        &["@+9d1h b2: failed b2 policy tag_rate_limited suggest=send_template"],
    );
}

#[test]
fn s1_4_6_an_echoed_human_agent_message_counts_toward_its_rate() {
    human_agent_once_a_day().check(
        &[
            customer("c1", "+0s"),
            agent("e1", "+25h").tag(Tag::HumanAgent).echo(),
        ],
        agent("a2", "+30h"),
        &["@+30h a2: failed a2 policy tag_rate_limited suggest=send_template"],
    );
}

#[test]
fn s1_4_7_automation_with_an_invalid_tag_in_the_extension_needs_a_human() {
    // +60d is after the tags' deprecation on 2026-04-27.
    fb().check(
        &[customer("c1", "+60d"), tick("+61d")],
        bot("b1", "+62d").tag(Tag::AccountUpdate),
        &["@+62d b1: failed b1 policy human_agent_requires_human suggest=use_human_agent"],
    );
}

#[test]
fn s1_4_8_after_a_cut_inside_24h_free_form_is_window_expired() {
    fb().check(
        &[
            customer("c1", "+0s"),
            agent("a1", "+1h"),
            status("s1", "a1", Status::Failed, "+1h1m").error(10, Some(2_018_278)),
        ],
        agent("a2", "+2h"),
        &["@+2h a2: failed a2 policy window_expired suggest=send_template"],
    );
}

#[test]
fn s1_4_8_after_a_cut_inside_the_extension_it_is_extended_window_expired() {
    fb().check(
        &[
            customer("c1", "+0s"),
            agent("a1", "+2d"),
            status("s1", "a1", Status::Failed, "+2d1m").error(10, Some(2_018_278)),
        ],
        agent("a2", "+3d"),
        &["@+3d a2: failed a2 policy extended_window_expired suggest=send_template"],
    );
}

#[test]
fn s1_4_9_allowed_names_the_private_reply_not_a_message() {
    assert_eq!(
        allowed_after(&ig(), &[comment("k1", "cm1", "+0s")]),
        ["private_reply", "comment_reply"]
    );
    assert_eq!(
        allowed_after(&fb(), &[comment("k1", "cm1", "+0s")]),
        [
            "template",
            "private_reply",
            "comment_reply",
            "account_update",
            "confirmed_event_update",
            "post_purchase_update"
        ]
    );
    assert_eq!(
        allowed_after(&ig(), &[customer("c1", "+0s")]),
        ["message", "comment_reply"]
    );
}

#[test]
fn s1_4_10_no_greeting_for_a_session_that_opens_in_the_extension() {
    fb().with(|p| p.notifier.greet_on_open = true).check(
        &[],
        customer("c1", "+0s").logged("+2d"),
        &["@+2d c1: state none->extended_window human_agent ends=+7d session=1"],
    );
}

#[test]
fn s1_4_10_a_session_opened_by_a_comment_is_greeted() {
    ig().with(|p| p.notifier.greet_on_open = true).check(
        &[],
        comment("k1", "cm1", "+0s"),
        &[
            "@+0s k1: state none->open private_reply ends=+7d session=1",
            "@+0s k1: auto_reply conversation_opened reply_by=+7d",
        ],
    );
}

#[test]
fn s1_4_11_the_window_end_is_the_latest_unused_allowance() {
    ig().check(
        &[comment("k1", "cm1", "+0s"), comment("k2", "cm2", "+1d")],
        agent("p1", "+1d1h")
            .kind(MessageKind::PrivateReply)
            .on_comment("cm2"),
        &[
            "@+25h p1: accepted p1 private_reply comment=cm2 ends=+8d",
            "@+25h p1: state open->open private_reply ends=+7d session=1",
        ],
    );
}

#[test]
fn s1_4_12_a_duplicate_does_not_move_the_clock() {
    // The same reading as R14's: a duplicate logged a day later lets no deadline fire.
    wa().check(
        &[customer("c1", "+0s")],
        customer("c1", "+0s").logged("+2d"),
        &[],
    );
}

#[test]
fn s1_4_13_a_customer_dm_does_not_erase_a_used_allowance() {
    ig().check(
        &[
            comment("k1", "cm1", "+0s"),
            agent("p1", "+1h")
                .kind(MessageKind::PrivateReply)
                .on_comment("cm1"),
            customer("c1", "+2h"),
        ],
        agent("p2", "+3h")
            .kind(MessageKind::PrivateReply)
            .on_comment("cm1"),
        &["@+3h p2: failed p2 policy private_reply_used suggest=wait_for_customer"],
    );
}

#[test]
fn s1_4_14_a_private_reply_without_its_comment_is_decided() {
    let outputs = ig().run(
        &[comment("k1", "cm1", "+0s")],
        &agent("p1", "+1h").kind(MessageKind::PrivateReply),
    );
    let shown: Vec<String> = outputs.iter().map(show).collect();
    assert_eq!(
        shown,
        ["@+1h p1: failed p1 policy no_customer_message suggest=wait_for_customer"]
    );
    assert!(
        detail_of(&outputs[0]).contains("names no comment"),
        "{}",
        detail_of(&outputs[0])
    );
}
